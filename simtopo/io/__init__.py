"""Reading and writing files: YAML documents with line numbers for every key path, validation
against a schema with one-line errors, atomic writers, paths as the user typed them.
"""
