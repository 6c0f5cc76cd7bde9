"""Address/port variables and groups (gateway/ids/vars.py)."""
import ipaddress

import pytest

from gateway.config import Config
from gateway.ids.vars import VarError, Variables


def packed(ip: str) -> bytes:
    return ipaddress.ip_address(ip).packed


def test_default_home_and_external_net():
    v = Variables()
    home, ext = v.address("$HOME_NET"), v.address("$EXTERNAL_NET")
    for ip in ("10.1.2.3", "192.168.0.1", "172.31.255.255"):
        assert home.contains(packed(ip)) and not ext.contains(packed(ip))
    for ip in ("8.8.8.8", "172.32.0.1", "2001:db8::1"):
        assert ext.contains(packed(ip)) and not home.contains(packed(ip))
    assert v.address("$HTTP_SERVERS").v4 == home.v4
    assert v.port("$HTTP_PORTS").ranges == ((80, 80),)


def test_group_negation_and_nesting():
    v = Variables({"HOME_NET": "[10.0.0.0/8,!10.1.0.0/16]"})
    home = v.address("$HOME_NET")
    assert home.contains(packed("10.2.0.1"))
    assert not home.contains(packed("10.1.5.5"))
    g = v.address("[$HOME_NET,![10.2.0.0/16,10.3.0.1]]")
    assert not g.contains(packed("10.2.9.9"))
    assert not g.contains(packed("10.3.0.1"))
    assert g.contains(packed("10.3.0.2"))
    only_neg = v.address("[!1.2.3.4]")
    assert only_neg.contains(packed("1.2.3.5")) and not only_neg.contains(packed("1.2.3.4"))
    assert only_neg.contains(packed("::1"))
    assert v.address("any").is_any
    assert v.address("1.2.3.4-1.2.3.6").contains(packed("1.2.3.5"))


def test_ipv6_networks():
    g = Variables().address("[2001:db8::/32,!2001:db8:1::/48]")
    assert g.contains(packed("2001:db8:2::1"))
    assert not g.contains(packed("2001:db8:1::1"))
    assert not g.contains(packed("10.0.0.1"))


def test_ports():
    v = Variables()
    p = v.port("[80,443,8000:8100,!8080]")
    assert all(p.contains(x) for x in (80, 443, 8000, 8079, 8081, 8100))
    assert not any(p.contains(x) for x in (81, 8080, 8101, 0, 65535))
    assert v.port("1024:").contains(65535) and not v.port("1024:").contains(1023)
    assert v.port(":1023").contains(0) and not v.port(":1023").contains(1024)
    assert v.port("!80").contains(81) and not v.port("!80").contains(80)
    assert v.port("any").is_any and v.port("any").contains(0) and v.port("any").contains(65535)
    assert v.port("$FILE_DATA_PORTS").ranges == ((80, 80), (110, 110), (143, 143))


@pytest.mark.parametrize("text, what", [
    ("$NOPE", "undefined address variable $NOPE"),
    ("[10.0.0.0/8", "unbalanced"),
    ("300.1.1.1", "not an IP"),
    ("[1.1.1.1,,2.2.2.2]", "empty item"),
    ("$HTTP_PORTS", "port variable"),
])
def test_bad_addresses(text, what):
    with pytest.raises(VarError, match=what.replace("$", r"\$").replace("[", r"\[")):
        Variables().address(text)


@pytest.mark.parametrize("text", ["70000", "90:80", "$HOME_NET", "abc", "[80", "!any"])
def test_bad_ports(text):
    with pytest.raises(VarError):
        Variables().port(text)


def test_empty_groups_and_home_net_any():
    v = Variables({"HOME_NET": "any"})
    v.validate()                                   # only configured variables are checked up front
    assert v.address("$HOME_NET").is_any
    with pytest.raises(VarError, match="matches no address"):
        v.address("$EXTERNAL_NET")                 # !any: rules using it are rejected, as in Suricata
    with pytest.raises(VarError, match="matches no address"):
        Variables().address("[10.0.0.0/8,!10.0.0.0/8]")
    with pytest.raises(VarError, match=r"\$HOME_NET"):
        Variables({"HOME_NET": "[10.0.0.0/8"}).validate()


def test_from_pairs_tells_ports_from_addresses():
    v = Variables.from_pairs([("RDP_PORT", "3389"), ("MAIL_SERVICE", "[25,465,587]"), ("PACS", "10.20.0.5"),
                              ("LAB", "any")])
    assert v.port("$RDP_PORT").contains(3389) and v.port("$MAIL_SERVICE").contains(465)
    assert v.address("$PACS").contains(packed("10.20.0.5"))
    assert v.port("$LAB").is_any and v.address("$LAB").is_any


def test_variable_loop_is_an_error():
    v = Variables({"A": "$B", "B": "[$A,1.1.1.1]"})
    with pytest.raises(VarError, match="nested too deep"):
        v.address("$A")


def test_from_config_splits_port_and_address_vars():
    cfg = Config(vars=(("HOME_NET", "[10.10.0.0/16]"), ("HTTP_PORTS", "[80,8080]"), ("$DNS_SERVERS", "10.10.0.53")))
    v = Variables.from_config(cfg)
    v.validate()
    assert v.address("$HOME_NET").contains(packed("10.10.3.3"))
    assert not v.address("$HOME_NET").contains(packed("192.168.1.1"))
    assert v.port("$HTTP_PORTS").contains(8080)
    assert v.address("$DNS_SERVERS").contains(packed("10.10.0.53"))
    assert v.address("$EXTERNAL_NET").contains(packed("192.168.1.1"))
