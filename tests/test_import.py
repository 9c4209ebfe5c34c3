"""simtopo topo import: lspci -tv (and -vv) output read into a topology file."""

from __future__ import annotations

import pytest

from simtopo import ConfigError
from simtopo.cli import main
from simtopo.topology.files import load_topology
from simtopo.topology.lspci import parse_links, parse_tree

from .conftest import ROOT, TOPOLOGIES

DATA = ROOT / "tests" / "data" / "lspci"
STANDARD = ["--card", "Qualcomm.*a100=ai100-standard", "--include",
            str(TOPOLOGIES / "cards" / "ai100-standard.yaml")]


def imported(tmp_path, capsys, tv: str, *extra: str) -> str:
    out = tmp_path / "imported.yaml"
    assert main(["topo", "import", str(DATA / tv), *extra, "-o", str(out)]) == 0
    assert capsys.readouterr().out == f"wrote {out}\n"
    return out


def test_the_tree_of_lspci_tv():
    (root,) = parse_tree((DATA / "std8-tv.txt").read_text())
    assert root.address == "0000:00"
    port, = (n for n in root.children if n.address == "0000:00:01.0")
    (upstream,) = port.children
    assert (upstream.address, upstream.secondary) == ("0000:01:00.0", "02")
    ports = upstream.children
    assert [p.address for p in ports] == [f"0000:02:0{k}.0" for k in range(9)]
    assert [c.address for p in ports for c in p.children] == [
        f"0000:{bus:02x}:00.0" for bus in range(3, 11)]  # the ninth port is empty
    assert {c.name for p in ports for c in p.children} == {"Qualcomm Device a100"}
    nic = next(n for n in root.children if n.address == "0000:00:03.0")
    assert [c.address for c in nic.children] == ["0000:0d:00.0", "0000:0d:00.1"]


def test_links_of_lspci_vv():
    links = parse_links((DATA / "std8-vv.txt").read_text())
    assert links["0000:01:00.0"] == (4, 16)
    assert links["0000:03:00.0"] == (4, 8)
    assert links["0000:0c:00.0"] == (4, 4)
    assert "0000:02:00.0" not in links


def test_an_imported_tree_is_its_hand_written_twin(tmp_path, capsys):
    out = imported(tmp_path, capsys, "std8-tv.txt", "--vv", str(DATA / "std8-vv.txt"),
                   *STANDARD)
    text = out.read_text()
    assert "# read: LnkSta of 0000:01:00.0; upstream port 0000:01:00.0" in text
    assert "#   0000:0d:00.0 Intel Corporation Ethernet Controller E810-C for QSFP" in text
    mine, twin = load_topology(out), load_topology(DATA / "std8-twin.yaml")
    # the same graph: every node and link with every attribute (only the names differ)
    assert dict(mine.graph.nodes(data=True)) == dict(twin.graph.nodes(data=True))
    assert mine.graph.adj == twin.graph.adj
    # and so it routes like it
    assert mine.route("card0.soc0", "card7.soc0").links == \
        twin.route("card0.soc0", "card7.soc0").links


def test_ultra_cards_behind_their_switches_and_two_sockets(tmp_path, capsys):
    out = imported(tmp_path, capsys, "ultra2-tv.txt", "--card",
                   "Qualcomm.*a100=ai100-ultra", "--include",
                   str(TOPOLOGIES / "cards" / "ai100-ultra.yaml"), "--sockets", "2")
    topo = load_topology(out)
    assert [c.type for c in topo.cards.values()] == ["ai100-ultra"] * 2
    assert topo.node("card1.sw")["parent"] == "sw0"
    assert topo.node("nvme0")["socket"] == "cpu1" and topo.node("sw0")["socket"] == "cpu0"
    text = out.read_text()
    assert "4 SoCs behind the switch at 0000:03:00.0: one card (inferred)" in text
    assert "link: {gen: 4, lanes: 4}" in text  # a drive's link, assumed without -vv


def test_a_link_other_than_the_card_type_says_is_pointed_out(tmp_path, capsys):
    vv = (DATA / "std8-vv.txt").read_text().replace(
        "0000:05:00.0 Unassigned class [ff00]: Qualcomm Device a100\n\t\tLnkSta:\tSpeed "
        "16GT/s (ok), Width x8", "0000:05:00.0 Unassigned class [ff00]: Qualcomm Device "
        "a100\n\t\tLnkSta:\tSpeed 8GT/s (downgraded), Width x8")
    (tmp_path / "vv.txt").write_text(vv)
    out = imported(tmp_path, capsys, "std8-tv.txt", "--vv", str(tmp_path / "vv.txt"),
                   *STANDARD)
    assert ("read: 0000:05:00.0 Qualcomm Device a100; lspci reports Gen3 x8 at "
            "0000:05:00.0, the card type says Gen4 x8") in out.read_text()


@pytest.mark.parametrize("text, message", [
    ("hello world\n", "lspci -tv:1: not lspci -tv output: unexpected 'hello world' at "
                      "column 1"),
    ("           +-02.0  Intel\n", "lspci -tv:1: not lspci -tv output: a branch at column 12 "
                                  "below no bridge"),
    ("-[0000:00]-+-00.0  Intel\n           \\-1f.0----00.0  x\n",
     "lspci -tv:2: not lspci -tv output: an endpoint (0000:00:1f.0) with children"),
    ("\n", "lspci -tv: not lspci -tv output: no root bus"),
])
def test_what_is_not_lspci_tv_is_refused_in_one_line(text, message):
    with pytest.raises(ConfigError) as err:
        parse_tree(text)
    assert str(err.value).startswith(message)


def test_the_command_refuses_in_one_line_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "x.yaml"
    args = ["topo", "import", str(DATA / "std8-tv.txt"), "-o", str(out)]
    assert main([*args, "--card", "Nvidia=ai100-standard", "--include",
                 str(TOPOLOGIES / "cards" / "ai100-standard.yaml")]) == 2
    err = capsys.readouterr().err
    assert "no device matches a --card pattern, and a topology needs a SoC" in err
    assert err.count("\n") == 1 and not out.exists()
    assert main([*args, "--card", "a100=ai100-pro", *STANDARD[2:]]) == 2
    assert "no card type 'ai100-pro' in the included files (known: ai100-standard)" in \
        capsys.readouterr().err
    assert main([*args, "--card", "a100", *STANDARD[2:]]) == 2
    assert "--card 'a100': expected PATTERN=TYPE" in capsys.readouterr().err
    assert main([*args, *STANDARD, "--sockets", "2"]) == 2
    assert "--sockets 2: expected 1 to 1 (the root buses)" in capsys.readouterr().err


NVSMI = ROOT / "tests" / "data" / "nvsmi"
A100 = ["--card-type", "a100-pcie", "--include", str(TOPOLOGIES / "cards" / "gpus.yaml")]


def test_nvidia_smi_topo_m_is_imported_as_its_twin(tmp_path, capsys):
    out = tmp_path / "a100.yaml"
    assert main(["topo", "import", str(NVSMI / "a100x8-bridged.txt"), *A100, "-o",
                 str(out)]) == 0
    capsys.readouterr()
    mine, twin = load_topology(out), load_topology(NVSMI / "a100x8-twin.yaml")
    assert dict(mine.graph.nodes(data=True)) == dict(twin.graph.nodes(data=True))
    assert mine.graph.adj == twin.graph.adj
    # NV12: 12 links of 25 GB/s each way; a bridged pair routes over it
    route = mine.route("card0.soc0", "card1.soc0")
    assert (route.path_class, route.bottleneck_Bps) == ("fabric", 300e9)
    assert "read: GPU0-GPU1 NV12; 12 x 25 GB/s each way" in out.read_text()


def nvsmi_mesh(n: int, cell: str) -> str:
    rows = ["\t" + "\t".join(f"GPU{k}" for k in range(n)) + "\tCPU Affinity\tNUMA Affinity"]
    rows += [f"GPU{i}\t" + "\t".join(" X " if i == j else cell for j in range(n))
             + "\t0-63\t0" for i in range(n)]
    return "\n".join(rows)


def test_an_nvswitch_system_is_a_switch_and_a_mesh_a_link_per_pair(tmp_path):
    from simtopo.topology.files import load_card_library
    from simtopo.topology.nvsmi import import_nvsmi

    gpus = str(TOPOLOGIES / "cards" / "gpus.yaml")
    types = load_card_library(gpus)
    # 4 GPUs showing NV18 to each other: 54 NVLinks a GPU, more than any has (18): switched
    text = import_nvsmi(nvsmi_mesh(4, "NV18"), "a100-pcie", types, [gpus], "nvs")
    assert "fabric_switches:" in text and text.count("kind: nvlink") == 4
    path = tmp_path / "nvs.yaml"
    path.write_text(text)
    over = load_topology(path).route("card0.soc0", "card3.soc0")
    assert (over.nodes, over.bottleneck_Bps) == (("card0.soc0", "nvswitch", "card3.soc0"),
                                                 18 * 25e9)
    assert over.latency_s == pytest.approx(1e-6)  # 500 ns each side: as a direct pair's link
    # 4 GPUs showing NV4 (an HGX A100 4-GPU board's mesh): 12 NVLinks a GPU, direct links
    text = import_nvsmi(nvsmi_mesh(4, "NV4"), "a100-pcie", types, [gpus], "mesh")
    assert "fabric_switches:" not in text and text.count("kind: nvlink") == 6
    assert "bandwidth: 100GB/s" in text  # 4 x 25 GB/s


@pytest.mark.parametrize("change, message", [
    (("GPU1\tNV12\t X \tPXB", "GPU1\tPIX\t X \tPXB"), "GPU0 to GPU1 says 'NV12' but GPU1 to "
                                                      "GPU0 'PIX': the matrix must be "
                                                      "symmetric"),
    (("GPU0\t X \tNV12\tPXB", "GPU0\t X \tNV12\tQPI"), "GPU0 to GPU2 says 'QPI' (expected X, "
                                                       "NV#, PIX, PXB, PHB, NODE, SYS)"),
    (("GPU7\tSYS", "NIC7\tSYS"), "no row for GPU7"),
])
def test_what_is_not_nvidia_smi_topo_m_is_refused(tmp_path, capsys, change, message):
    bad = tmp_path / "bad.txt"
    bad.write_text((NVSMI / "a100x8-bridged.txt").read_text().replace(*change))
    assert main(["topo", "import", str(bad), *A100]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert main(["topo", "import", str(NVSMI / "a100x8-bridged.txt"), *STANDARD]) == 2
    assert "nvidia-smi topo -m output takes --card-type TYPE" in capsys.readouterr().err
    (tmp_path / "x.txt").write_text("hello\n")
    assert main(["topo", "import", str(tmp_path / "x.txt"), *A100]) == 2
    assert "not lspci -tv output (it starts" in capsys.readouterr().err


HWLOC = ROOT / "tests" / "data" / "hwloc"


def test_hwloc_xml_is_imported_as_its_twin_with_the_sockets_it_reads(tmp_path, capsys):
    out = imported(tmp_path, capsys, "../hwloc/std8.xml", *STANDARD)
    text = out.read_text()
    assert "cores: 4  # read: hwloc Package 0" in text
    assert "memory: 768GiB  # read: hwloc Package 0" in text
    # 31.5 GB/s is Gen4 x16 (or Gen3 x32, Gen5 x8, Gen6 x4 as older hwloc codes Gen6): the
    # usual width of an uplink wins
    assert "uplink: {gen: 4, lanes: 16}}  # inferred: 31.5077 GB/s at 0000:01:00.0 (or Gen3 " \
           "x32, Gen5 x8, Gen6 x4: the same rate)" in text
    mine, twin = load_topology(out), load_topology(HWLOC / "std8-twin.yaml")
    assert dict(mine.graph.nodes(data=True)) == dict(twin.graph.nodes(data=True))
    assert mine.graph.adj == twin.graph.adj


def test_link_rates_to_generation_and_width():
    from simtopo.topology.importer import _link

    # Gen6 x16 as hwloc 2.8+ gives it (242/256) and as older hwloc does (128/130); never x32
    assert _link("a", {"a": 64e9 * 242 / 256 / 8 * 16})[0] == "{gen: 6, lanes: 16}"
    assert _link("a", {"a": 64e9 * 128 / 130 / 8 * 16})[0] == "{gen: 6, lanes: 16}"
    assert _link("a", {"a": 7.876923e9}, (4, 4))[0] == "{gen: 4, lanes: 4}"  # a drive
    with pytest.raises(ConfigError, match="a link of 3 GB/s is no PCIe generation"):
        _link("a", {"a": 3e9})


@pytest.mark.parametrize("text, message", [
    ('<?xml version="1.0"?><!DOCTYPE t [<!ENTITY a "aaaa">]><topology>&a;</topology>',
     "declares XML entities; hwloc XML has none"),
    ("<?xml version='1.0'?><topology><object", "not XML ("),
    ("<?xml version='1.0'?><machine/>", "not hwloc XML (its root is <machine>, expected "
                                       "<topology>"),
    ("<?xml version='1.0'?><topology><object type='Package'/></topology>",
     "no host bridge (a Bridge object with bridge_type '0-1')"),
    ("<?xml version='1.0'?><topology><object type='Bridge' bridge_type='0-1' "
     "bridge_pci='0000:[00-0f]'><object type='PCIDev' pci_busid='zz'/></object></topology>",
     "a PCIDev with pci_busid 'zz' (expected '0000:03:00.0')"),
])
def test_what_is_not_hwloc_xml_is_refused(tmp_path, capsys, text, message):
    bad = tmp_path / "bad.xml"
    bad.write_text(text)
    assert main(["topo", "import", str(bad), *STANDARD]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_lspci_vv_links_belong_to_their_own_function():
    text = ("0000:00:01.0 PCI bridge: Intel Corporation Device 347a\n"
            "\t\tLnkSta:\tSpeed 16GT/s (ok), Width x16 (ok)\n"
            "10000:e1:00.0 Non-Volatile memory controller: Intel VMD NVMe\n"
            "\t\tLnkSta:\tSpeed 8GT/s (ok), Width x4 (ok)\n"
            "Some banner lspci does not print before a function\n"
            "\t\tLnkSta:\tSpeed 2.5GT/s, Width x1\n"
            "0000:02:00.0 Ethernet controller: a NIC whose link is down\n"
            "\t\tLnkSta:\tSpeed 2.5GT/s, Width x0\n")
    assert parse_links(text) == {"0000:00:01.0": (4, 16), "10000:e1:00.0": (3, 4)}


def test_a_device_is_its_first_function(tmp_path, capsys):
    tv = tmp_path / "tv.txt"
    tv.write_text("-[0000:00]-+-01.0-[01]--+-00.0  Qualcomm Device a100\n"
                  "           |            \\-00.1  Qualcomm Device a100 (second function)\n"
                  "           \\-02.0-[02]----00.0  Qualcomm Device a100\n")
    out = tmp_path / "my server (lab).yaml"
    assert main(["topo", "import", str(tv), *STANDARD, "-o", str(out)]) == 0
    capsys.readouterr()
    topo = load_topology(out)
    assert topo.name == "my-server-lab" and len(topo.cards) == 2
    assert "#   0000:01:00.1 Qualcomm Device a100 (second function)" in out.read_text()
    assert main(["topo", "import", str(tv), *STANDARD, "--name", "a #b"]) == 2
    assert "name" in capsys.readouterr().err


def test_sr_iov_virtual_functions_are_slices_of_their_device(tmp_path, capsys):
    # a device at 01:00.0 with 8 virtual functions enabled at offset 4, stride 1: routing IDs
    # 0x0104 .. 0x010b, that is 01:00.4 .. 01:00.7 and 01:01.0 .. 01:01.3 (the PCIe SR-IOV
    # layout); 01:01.0 looks like a second device's first function in the tree alone
    vfs = [f"01.{f}" for f in range(4)] + [f"00.{f}" for f in range(4, 8)]
    rows = "".join(f"           |            +-{vf}  Qualcomm Device a100\n"
                   for vf in sorted(vfs))
    tv = tmp_path / "tv.txt"
    tv.write_text("-[0000:00]-+-01.0-[01]--+-00.0  Qualcomm Device a100\n" + rows
                  + "           |            \\-02.0  Qualcomm Device a100\n"
                  "           \\-02.0-[02]----00.0  Qualcomm Device a100\n")
    vv = tmp_path / "vv.txt"
    vv.write_text("0000:01:00.0 Unassigned class [ff00]: Qualcomm Device a100\n"
                  "\tCapabilities: [160 v1] Single Root I/O Virtualization (SR-IOV)\n"
                  "\t\tInitial VFs: 16, Total VFs: 16, Number of VFs: 8, Function "
                  "Dependency Link: 00\n"
                  "\t\tVF offset: 4, stride: 1, Device ID: a101\n")
    from simtopo.topology.lspci import parse_virtual_functions

    assert parse_virtual_functions(vv.read_text()) == {
        f"0000:01:{vf}": "0000:01:00.0" for vf in vfs}
    out = tmp_path / "out.yaml"
    assert main(["topo", "import", str(tv), *STANDARD, "-o", str(out)]) == 0
    assert len(load_topology(out).cards) == 4  # 01:00.0, the VF at 01:01.0, 01:02.0, 02:00.0
    assert main(["topo", "import", str(tv), "--vv", str(vv), *STANDARD, "-o", str(out)]) == 0
    capsys.readouterr()
    assert len(load_topology(out).cards) == 3  # the physical functions' devices
    assert "#   8 of 0000:01:00.0" in out.read_text()
