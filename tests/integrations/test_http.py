"""The outbound HTTP door: SSRF guard, deadlines, redirects, response caps, pooling."""

from __future__ import annotations

import socket

import pytest
import urllib3

from integrations import http
from tests.fakes.receiver import Receiver, refused_url


@pytest.fixture
def private_off(settings):
    # The autouse fixture opens private targets for the fakes; these tests are about the guard.
    settings.OPTIO_ALLOW_PRIVATE_URLS = False


@pytest.fixture
def rx():
    with Receiver() as receiver:
        yield receiver


@pytest.mark.parametrize(
    "url, reason",
    [
        ("http://127.0.0.1/hook", "loopback"),
        ("http://10.1.2.3/", "private"),
        ("http://172.16.0.9/", "private"),
        ("http://192.168.0.1/", "private"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://100.64.0.1/", "carrier-grade NAT"),
        ("http://0.0.0.0/", "unspecified"),
        ("http://224.0.0.1/", "multicast"),
        ("http://240.0.0.1/", "reserved"),
        ("http://[::1]/", "loopback"),
        ("http://[fc00::1]/", "private"),
        ("http://[fe80::1]/", "link-local"),
        ("http://[::]/", "unspecified"),
    ],
)
def test_literal_private_addresses_are_blocked(private_off, url, reason):
    with pytest.raises(http.BlockedDestination) as exc:
        http.check_url(url)
    assert reason in exc.value.reason
    assert "OPTIO_ALLOW_PRIVATE_URLS" in exc.value.reason


@pytest.mark.parametrize(
    "host",
    [
        "2130706433",  # decimal 127.0.0.1
        "0x7f000001",  # hex
        "0177.0.0.1",  # octal
        "127.1",  # short form
        "0xa9fea9fe",  # 169.254.169.254 in hex
        "2852039166",  # 169.254.169.254 in decimal
    ],
)
def test_numeric_spellings_of_private_addresses_are_blocked(private_off, host):
    with pytest.raises(http.BlockedDestination):
        http.check_url(f"http://{host}/hook")


@pytest.mark.parametrize(
    "host",
    [
        "[::ffff:127.0.0.1]",  # IPv4-mapped
        "[::ffff:7f00:1]",  # the same, written in hex
        "[::ffff:169.254.169.254]",
        "[::ffff:10.0.0.1]",
        "[2002:7f00:1::1]",  # 6to4 wrapping 127.0.0.1
        "[64:ff9b::a9fe:a9fe]",  # NAT64 wrapping 169.254.169.254
        "[fec0::1]",  # site-local
    ],
)
def test_ipv6_forms_that_reach_private_ipv4_are_blocked(private_off, host):
    with pytest.raises(http.BlockedDestination):
        http.check_url(f"https://{host}/hook")


def test_a_name_resolving_to_loopback_is_blocked(private_off):
    with pytest.raises(http.BlockedDestination) as exc:
        http.check_url("http://localhost:8080/hook")
    assert "loopback" in exc.value.reason


def test_every_resolved_address_is_checked_not_just_the_first(private_off, monkeypatch):
    # DNS is the one thing that cannot run here: a name with one public and one private answer.
    def fake_getaddrinfo(host, port, *args, **kwargs):
        assert host == "mixed.example"
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.7", port)),
        ]

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    with pytest.raises(http.BlockedDestination) as exc:
        http.check_url("https://mixed.example/hook")
    assert "10.0.0.7" in exc.value.reason


def test_public_address_is_allowed_and_pinned(private_off):
    target = http.resolve("https://93.184.216.34:8443/hook?x=1")
    assert (target.address, target.port, target.path) == ("93.184.216.34", 8443, "/hook?x=1")


@pytest.mark.parametrize(
    "url, words",
    [
        ("ftp://example.com/x", "Only http:// and https://"),
        ("file:///etc/passwd", "Only http:// and https://"),
        ("gopher://127.0.0.1:25/", "Only http:// and https://"),
        ("https://user:pw@example.com/", "user name or password"),
        ("http:///nohost", "no host"),
        ("", "required"),
        ("http://example.com:99999/", "not a valid URL"),
        ("http://no-such-host.invalid/", "could not be resolved"),
    ],
)
def test_bad_urls_are_refused_with_a_reason(url, words):
    with pytest.raises(http.InvalidUrl) as exc:
        http.check_url(url)
    assert words in exc.value.reason


def test_blocked_at_send_time_makes_no_connection(private_off, rx):
    with pytest.raises(http.BlockedDestination):
        http.request("POST", rx.url, body=b"{}")
    assert rx.requests == []


def test_allow_private_opens_loopback(rx):
    resp = http.request("POST", rx.url, body=b'{"a":1}', headers={"Content-Type": "application/json"})
    assert resp.ok and resp.status == 200
    assert rx.requests[0].body == b'{"a":1}'
    assert rx.requests[0].headers["user-agent"].startswith("Optio/")


def test_redirect_to_metadata_address_is_returned_not_followed(rx):
    with Receiver() as metadata:  # stands in for 169.254.169.254: it must never be asked
        rx.plan(f"302:{metadata.url}")
        resp = http.request("POST", rx.url, body=b"{}")
        assert resp.status == 302
        assert resp.header("location") == metadata.url
        assert metadata.requests == []
    rx.plan("307:http://169.254.169.254/latest/meta-data/iam/")
    resp = http.request("POST", rx.url, body=b"{}")
    assert resp.status == 307 and not resp.ok
    assert len(rx.requests) == 2


def test_connection_refused_is_a_connect_error():
    with pytest.raises(http.ConnectFailed) as exc:
        http.request("POST", refused_url(), body=b"{}")
    assert "connection refused" in exc.value.reason


def test_a_hanging_server_times_out(rx):
    with pytest.raises(http.Timeout):
        http.request("POST", rx.url_for("hang"), body=b"{}", timeout=0.5)


@pytest.mark.timeout(30)
def test_a_dripping_response_is_cut_at_the_overall_deadline(rx):
    # One byte every 0.2 s never trips a per-read timeout; only the overall deadline stops it.
    with pytest.raises(http.Timeout):
        http.request("POST", rx.url_for("drip:0.2"), body=b"{}", timeout=1.0)
    # the watchdog did not poison the pool: the next request works
    assert http.request("POST", rx.url, body=b"{}").status == 200


def test_slow_answer_within_the_deadline_succeeds(rx):
    resp = http.request("POST", rx.url_for("slow:0.2"), body=b"{}", timeout=5)
    assert resp.status == 200
    assert resp.elapsed >= 0.2


def test_huge_response_is_truncated_and_the_pool_stays_usable(rx):
    resp = http.request("POST", rx.url_for("huge:5000000"), body=b"{}", max_response=65536)
    assert resp.status == 200 and resp.truncated
    assert len(resp.body) == 65536
    assert http.request("POST", rx.url, body=b"{}").status == 200


def test_a_body_within_the_limit_is_read_whole(rx, monkeypatch):
    reads = []
    real_read = urllib3.response.HTTPResponse.read
    monkeypatch.setattr(
        urllib3.response.HTTPResponse, "read", lambda self, *a, **k: reads.append(a) or real_read(self, *a, **k)
    )

    resp = http.request("POST", rx.url_for("huge:3000000"), body=b"{}", max_response=4_000_000)

    assert resp.status == 200 and not resp.truncated and len(resp.body) == 3_000_000
    # Its Content-Length is known, so it takes one read (and one more that finds the end),
    # not 184 reads of 16 KiB.
    assert len(reads) == 2
    assert http.request("POST", rx.url, body=b"{}").status == 200


def test_payload_over_the_limit_is_refused_before_sending(rx):
    with pytest.raises(http.PayloadTooLarge) as exc:
        http.request("POST", rx.url, body=b"x" * 300_000, max_body=256 * 1024)
    assert "limit is 262144 bytes" in exc.value.reason
    assert rx.requests == []


def test_connections_are_pooled(rx):
    for _ in range(5):
        assert http.request("POST", rx.url, body=b"{}").status == 200
    assert len({r.peer for r in rx.requests}) == 1
