"""Platform checks: BAR space, ACS, P2P domains, uplink oversubscription."""

from __future__ import annotations

import simtopo
from simtopo.topology.checks import check_acs, check_bar_space, check_p2p_domains, check_uplinks

from .conftest import tiny_spec


def test_bar_space_ok_on_ultra8(ultra8):
    finding = check_bar_space(ultra8)
    assert finding.level == "ok"
    # 32 SoCs x 2 GiB = 64 GiB, against the declared 256 GiB
    assert finding.message == ("32 SoCs need 64 GiB of BAR space (2 GiB each); the host "
                               "declares 256 GiB")


def test_bar_space_too_small_is_an_error():
    topo = simtopo.topology_from_dict(tiny_spec(platform={"bar_space": "8GiB"}))
    finding = check_bar_space(topo)
    assert finding.level == "error"
    # tiny has 2 + 2 + 1 = 5 SoCs of 2 GiB: 10 GiB
    assert finding.message.startswith("5 SoCs need 10 GiB of BAR space (2 GiB each); the host "
                                      "declares only 8 GiB")


def test_bar_space_undeclared_is_a_warning():
    spec = tiny_spec()
    del spec["platform"]["bar_space"]
    assert check_bar_space(simtopo.topology_from_dict(spec)).level == "warning"


def test_acs_warning_names_the_switches(ultra8_acs, ultra8):
    finding = check_acs(ultra8_acs)
    assert finding.level == "warning"
    assert finding.message.startswith("ACS on at sw0, sw1, card0.sw")
    assert "root complex rc0" in finding.message and "MDP P2P needs ACS off" in finding.message
    assert check_acs(ultra8).level == "ok"


def test_p2p_domains_split_where_the_root_complex_refuses_p2p():
    topo = simtopo.topology_from_dict(tiny_spec(platform={"root_complex_p2p": False}))
    finding = check_p2p_domains(topo)
    # sw0 holds 2 cards x 2 SoCs; sw1 holds 1 SoC; limit 8
    assert finding.message == ("2 P2P domains (sizes 4, 1): tensor slicing over P2P reaches at "
                               "most 4 SoCs here, below the platform limit of 8")


def test_p2p_domains_warn_about_acs_hairpins(ultra8_acs):
    finding = check_p2p_domains(ultra8_acs)
    assert finding.level == "warning"
    assert "counting hairpins through ACS-on switches (sw0, sw1, card0.sw" in finding.message


def test_p2p_domains_ultra16_2s(ultra16_2s):
    finding = check_p2p_domains(ultra16_2s)
    assert finding.level == "ok" and "2 P2P domains (sizes 32, 32)" in finding.message


def test_uplink_oversubscription(tiny):
    messages = [f.message for f in check_uplinks(tiny)]
    # sw0: two Gen4 x16 cards (2 x 28.81 GB/s) behind a Gen4 x16 uplink: 2:1
    assert messages[0] == ("sw0: 2 x Gen4 x16 (57.61 GB/s) behind Gen4 x16 (28.81 GB/s): "
                           "2:1 toward the host")
    # sw1: one Gen3 x16 card (14.4 GB/s) behind a Gen3 x8 uplink (7.2 GB/s): 2:1
    assert messages[1] == ("sw1: 1 x Gen3 x16 (14.4 GB/s) behind Gen3 x8 (7.202 GB/s): "
                           "2:1 toward the host")
