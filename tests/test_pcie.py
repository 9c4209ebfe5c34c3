"""PCIe link bandwidth: the formula against hand-computed figures.

Hand calculation, per direction, MPS 256 B and 24 B of TLP overhead (payload 256/280):
  Gen3 x8:  8 GT/s x 8 lanes = 64 Gb/s; x 128/130 = 63.0154 Gb/s; / 8 = 7.87692 GB/s;
            x 256/280 = 7.20175824 GB/s.  Gen3 x16 and Gen4 x8 are twice that: 14.4035165 GB/s.
  Gen4 x16 = Gen5 x8 = 28.8070330 GB/s; Gen5 x16 = 57.6140659 GB/s.
  Gen1 x1:  2.5 GT/s x 8/10 / 8 = 0.25 GB/s; x 256/280 = 0.228571429 GB/s.
  Gen6 x16 (FLIT, 16 B header only): 64 x 16 x 236/256 / 8 = 118 GB/s; x 256/272 = 111.058824 GB/s.
"""

import pytest

from simtopo.topology import pcie


@pytest.mark.parametrize(("gen", "lanes", "gbps"), [
    (3, 8, 7.20175824),
    (3, 16, 14.4035165),
    (4, 8, 14.4035165),
    (4, 16, 28.8070330),
    (5, 8, 28.8070330),
    (5, 16, 57.6140659),
    (1, 1, 0.228571429),
    (6, 16, 111.058824),
])
def test_link_bandwidth_by_hand(gen, lanes, gbps):
    assert pcie.link_bandwidth(gen, lanes) == pytest.approx(gbps * 1e9, rel=1e-8)


def test_max_payload_changes_efficiency():
    # Gen4 x16 with MPS 128: 31.5076923 GB/s x 128/152 = 26.5327935 GB/s
    assert pcie.link_bandwidth(4, 16, max_payload_bytes=128) == pytest.approx(26.5327935e9,
                                                                              rel=1e-8)


def test_encoded_rate_gen4_x16():
    # 16 GT/s x 16 lanes x 128/130 / 8 = 31.5076923 GB/s
    assert pcie.encoded_bandwidth(4, 16) == pytest.approx(31.5076923e9, rel=1e-8)


@pytest.mark.parametrize(("args", "message"), [
    ((7, 16), "PCIe generation must be one of 1..6 (got 7)"),
    ((4, 12), "lane count must be one of 1, 2, 4, 8, 16, 32 (got 12)"),
])
def test_bad_link(args, message):
    with pytest.raises(ValueError) as info:
        pcie.link_bandwidth(*args)
    assert str(info.value) == message


def test_docs_quote_the_rates_the_built_ins_use():
    """docs/topologies.md gives the link rates of the fitted TLP overhead and the fitted
    root-complex hop, as the built-in topologies use them (not the 24-byte protocol value)."""
    import re

    from simtopo.constants import RC_HOP_S, TLP_OVERHEAD_BYTES
    from simtopo.topology.pcie import link_bandwidth

    from .conftest import ROOT

    text = (ROOT / "docs" / "topologies.md").read_text()
    quoted = dict(re.findall(r"(Gen\d x\d+) = ([\d.]+) GB/s", text))
    for name, gen, lanes in (("Gen4 x8", 4, 8), ("Gen4 x16", 4, 16), ("Gen5 x16", 5, 16)):
        assert float(quoted[name]) == round(link_bandwidth(gen, lanes, 256, TLP_OVERHEAD_BYTES)
                                            / 1e9, 2)
    assert f"root-complex hop ({RC_HOP_S * 1e9:.0f} ns" in text
