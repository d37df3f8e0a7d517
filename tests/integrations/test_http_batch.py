"""http.send_all: the door's path for many small requests (webhook drains).

The same guarantees as http.request (SSRF guard, deadlines, no redirects, capped bodies), on
kept-alive connections shared by a few lanes per destination.
"""

from __future__ import annotations

import datetime
import socket
import ssl
import threading
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from integrations import http
from tests.fakes.receiver import Receiver, refused_url


@pytest.fixture
def rx():
    with Receiver() as receiver:
        yield receiver


@pytest.fixture
def pool():
    executor = ThreadPoolExecutor(32)
    yield executor
    executor.shutdown(wait=True)


def send(urls, pool=None, body=b"{}", headers=None, **kwargs) -> list[http.Result]:
    requests = [
        http.Outgoing(url, headers or {"Content-Type": "application/json", "X-N": str(i)}, body)
        for i, url in enumerate(urls)
    ]
    sending = http.send_all(requests, executor=pool, **kwargs)
    assert sending.wait(30)
    return sending.results


def test_an_empty_batch_is_done_at_once(pool):
    sending = http.send_all([], executor=pool)
    assert sending.wait(0) and sending.results == []


def test_results_come_back_in_order_for_several_destinations(rx, pool):
    with Receiver() as other:
        urls = [rx.url, other.url_for("201"), rx.url_for("503"), other.url]
        results = send(urls, pool)
    assert [r.response.status for r in results] == [200, 201, 503, 200]
    assert all(r.error is None and r.elapsed > 0 for r in results)
    assert sorted(q.headers["x-n"] for q in rx.requests) == ["0", "2"]
    first = next(q for q in rx.requests if q.headers["x-n"] == "0")
    assert first.headers["user-agent"].startswith("Optio/")
    assert first.headers["host"] == f"127.0.0.1:{rx.port}"
    assert first.body == b"{}"


def test_requests_to_one_destination_share_a_few_kept_alive_connections(rx, pool, monkeypatch):
    monkeypatch.setattr(http, "GROW_AFTER", 60.0)  # the test receiver is slow (Nagle): no lanes added here
    assert all(r.response.status == 200 for r in send([rx.url] * 20, pool, lanes=2))
    assert all(r.response.status == 200 for r in send([rx.url] * 20, pool, lanes=2))
    assert len(rx.requests) == 40
    assert len({q.peer for q in rx.requests}) <= 2  # the second batch reused the first one's


def test_without_an_executor_requests_go_one_after_another_on_one_connection(rx):
    sending = http.send_all([http.Outgoing(rx.url, {}, b"{}")] * 3)
    assert sending.wait(0)  # all done on return
    assert [r.response.status for r in sending.results] == [200, 200, 200]
    assert len({q.peer for q in rx.requests}) == 1


def test_a_connection_idle_for_long_is_not_reused(rx, monkeypatch):
    assert send([rx.url])[0].response.status == 200
    monkeypatch.setattr(http, "IDLE_TIMEOUT", 0.0)  # as if it had sat idle past the limit
    assert send([rx.url])[0].response.status == 200
    monkeypatch.setattr(http, "IDLE_TIMEOUT", 60.0)
    assert send([rx.url])[0].response.status == 200
    first, second, third = (q.peer for q in rx.requests)
    assert first != second and second == third


def test_a_destination_is_resolved_and_checked_once_per_batch(rx, pool, monkeypatch):
    lookups = []
    real = socket.getaddrinfo
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: lookups.append(a[0]) or real(*a, **k))
    send([rx.url] * 5, pool)
    assert lookups == ["127.0.0.1"]  # connections go to the checked address: no lookup of their own
    send([rx.url] * 5, pool)
    assert len(lookups) == 2  # and the next batch checks again (DNS answers change)


def test_a_blocked_destination_is_an_error_and_nothing_is_sent(rx, pool, settings):
    settings.OPTIO_ALLOW_PRIVATE_URLS = False
    results = send([rx.url, rx.url], pool)
    assert all(isinstance(r.error, http.BlockedDestination) and r.response is None for r in results)
    assert "loopback" in results[0].error.reason
    assert rx.requests == []


def test_a_payload_over_the_limit_is_refused_and_the_rest_are_sent(rx, pool):
    requests = [http.Outgoing(rx.url, {}, b"x" * 300_000), http.Outgoing(rx.url, {}, b"{}")]
    sending = http.send_all(requests, executor=pool, max_body=256 * 1024)
    assert sending.wait(30)
    too_large, fine = sending.results
    assert isinstance(too_large.error, http.PayloadTooLarge)
    assert "limit is 262144 bytes" in too_large.error.reason
    assert fine.response.status == 200
    assert [q.body for q in rx.requests] == [b"{}"]


def test_a_redirect_is_returned_not_followed(rx, pool):
    with Receiver() as metadata:  # stands in for 169.254.169.254: it must never be asked
        rx.plan(f"302:{metadata.url}")
        (result,) = send([rx.url], pool)
        assert result.response.status == 302
        assert result.response.header("location") == metadata.url
        assert metadata.requests == []


def test_connection_refused_is_a_connect_error(pool):
    (result,) = send([refused_url()], pool)
    assert isinstance(result.error, http.ConnectFailed)
    assert "connection refused" in result.error.reason


def test_a_hanging_server_times_out(rx, pool):
    (result,) = send([rx.url_for("hang")], pool, timeout=0.5)
    assert isinstance(result.error, http.Timeout)


@pytest.mark.timeout(30)
def test_a_dripping_response_is_cut_at_the_overall_deadline(rx, pool):
    # One byte every 0.2 s never trips a per-read timeout; only the overall deadline stops it.
    (result,) = send([rx.url_for("drip:0.2")], pool, timeout=1.0)
    assert isinstance(result.error, http.Timeout)
    assert send([rx.url], pool)[0].response.status == 200


def test_a_huge_response_is_truncated_and_its_connection_not_reused(rx, pool):
    (result,) = send([rx.url_for("huge:5000000")], pool, max_response=65536)
    assert result.response.status == 200 and result.response.truncated
    assert len(result.response.body) == 65536
    assert send([rx.url], pool)[0].response.status == 200
    assert len({q.peer for q in rx.requests}) == 2


def test_lanes_are_added_while_requests_wait_behind_a_hanging_one(rx, pool, monkeypatch):
    # One lane to start with: without new lanes, the second request would start only when the
    # first timed out.
    monkeypatch.setattr(http, "GROW_AFTER", 0.05)
    sending = http.send_all(
        [http.Outgoing(rx.url_for("hang"), {}, b"{}") for _ in range(4)], executor=pool, lanes=1, timeout=3
    )
    assert not sending.wait(1.0)  # none can end before its timeout; waiting adds lanes (1, 2, 4)
    rx.wait_for(4, timeout=1)  # so all four are at the receiver, each on a lane of its own
    assert sending.results == [None] * 4
    assert sending.wait(10)
    assert all(isinstance(result.error, http.Timeout) for result in sending.results)
    assert len({q.peer for q in rx.requests}) == 4


def test_lanes_stop_growing_at_the_limit(rx, pool, monkeypatch):
    monkeypatch.setattr(http, "GROW_AFTER", 0.05)
    monkeypatch.setattr(http, "MAX_LANES", 3)
    sending = http.send_all(
        [http.Outgoing(rx.url_for("hang"), {}, b"{}") for _ in range(6)], executor=pool, lanes=1, timeout=1.5
    )
    assert not sending.wait(0.8)
    assert len(rx.requests) == 3  # the other three wait for a lane
    assert sending.wait(10)
    # Once the lanes are free the rest have waited longer than their timeout: not sent.
    assert [r.error.reason.startswith("Not sent") for r in sending.results].count(True) == 3
    assert len(rx.requests) == 3


def test_a_request_that_cannot_start_within_its_timeout_is_not_sent(rx, monkeypatch):
    # One sender thread, held by a hanging request: the others would start only after it, and
    # could then run past what the caller allows for the batch (a webhook claim's lease).
    monkeypatch.setattr(http, "GROW_AFTER", 0.05)
    single = ThreadPoolExecutor(1)
    try:
        requests = [http.Outgoing(rx.url_for("hang"), {}, b"{}") for _ in range(3)]
        sending = http.send_all(requests, executor=single, lanes=1, timeout=0.5)
        assert sending.wait(10)
        results = sending.results
    finally:
        single.shutdown()
    assert isinstance(results[0].error, http.Timeout) and "did not answer" in results[0].error.reason
    for late in results[1:]:
        assert isinstance(late.error, http.Timeout)
        assert late.error.reason.startswith("Not sent: it waited")
    assert len(rx.requests) == 1


def test_an_idle_connection_the_server_closed_is_replaced(pool):
    """A keep-alive connection the server closes while it sits idle is not used again."""
    connections, closed = [], threading.Event()

    def serve(listener):
        for _ in range(2):
            conn, _ = listener.accept()
            connections.append(conn)
            data = b""
            while b"\r\n\r\n" not in data or not data.endswith(b"{}"):
                data += conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            conn.close()  # keep-alive was promised; the server closes anyway (its idle timeout)
            closed.set()

    listener = socket.create_server(("127.0.0.1", 0))
    threading.Thread(target=serve, args=(listener,), daemon=True).start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/hook"
    try:
        assert send([url], pool)[0].response.status == 200
        assert closed.wait(5)
        (again,) = send([url], pool)
        assert again.error is None and again.response.status == 200
        assert len(connections) == 2
    finally:
        listener.close()


class CannedServer:
    """Answers every request with `response` (raw bytes) and counts connections; it never closes
    one itself, so a client that reuses a connection it was told to close waits in vain."""

    def __init__(self, response: bytes, close: bool = False) -> None:
        # close: the server closes each connection once it has answered (after one request).
        self.response, self.close_after, self.connections = response, close, 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/hook"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn) -> None:
        data = b""
        with conn:
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
                while b"\r\n\r\n" in data:
                    head, _, rest = data.partition(b"\r\n\r\n")
                    length = int(
                        next(
                            v
                            for k, _, v in (line.partition(b": ") for line in head.split(b"\r\n"))
                            if k.lower() == b"content-length"
                        )
                    )
                    if len(rest) < length:
                        break
                    data = rest[length:]
                    conn.sendall(self.response)
                    if self.close_after:
                        return

    def close(self) -> None:
        self.listener.close()


def test_a_response_that_says_connection_close_is_not_reused(pool):
    server = CannedServer(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
    try:
        first, second = send([server.url, server.url], timeout=3)  # one after another, one lane
        assert first.response.status == 200 and second.response.status == 200, (first.error, second.error)
        assert server.connections == 2
    finally:
        server.close()


def test_a_chunked_response_is_read_whole_and_its_connection_reused(pool):
    body = b"HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\nX-Thing: a\r\nX-Thing: b\r\n\r\n"
    server = CannedServer(body + b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
    try:
        results = send([server.url] * 3, timeout=3)
        assert [r.response.body for r in results] == [b"hello world"] * 3
        assert results[0].response.status == 202
        assert results[0].response.header("x-thing") == "a, b"  # repeated headers are joined
        assert server.connections == 1
    finally:
        server.close()


@pytest.mark.parametrize(
    "interim", [b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 103 Early Hints\r\nLink: </app.css>\r\n\r\n"]
)
def test_an_interim_response_is_passed_over_for_the_final_one(pool, interim):
    server = CannedServer(interim + b"HTTP/1.1 201 Created\r\nX-Final: yes\r\nContent-Length: 4\r\n\r\ndone")
    try:
        results = send([server.url] * 2, timeout=3)
        assert [(r.response.status, r.response.body) for r in results] == [(201, b"done")] * 2, results
        assert results[0].response.headers == {"x-final": "yes", "content-length": "4"}  # not the interim's
        assert server.connections == 1
    finally:
        server.close()


@pytest.mark.parametrize("extra", [b"GARBAGE", b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n"])
def test_bytes_after_the_response_do_not_change_it_and_the_connection_is_dropped(pool, extra):
    server = CannedServer(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: 1\r\n\r\nok" + extra)
    try:
        results = send([server.url] * 2, timeout=3)
        assert [(r.response.status, r.response.body) for r in results] == [(200, b"ok")] * 2, results
        assert results[0].response.headers == {"content-length": "2", "x-a": "1"}
        assert server.connections == 2  # what the server said next belongs to no request of ours
    finally:
        server.close()


def test_head_requests_are_refused():
    with pytest.raises(ValueError, match="HEAD"):
        http.send_all([http.Outgoing("http://127.0.0.1:9/", {}, b"")], method="HEAD")


def test_a_body_that_ends_when_the_server_closes_is_read_whole(pool):
    server = CannedServer(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it", close=True)
    try:
        results = send([server.url] * 2, timeout=3)
        assert [(r.response.status, r.response.body) for r in results] == [(200, b"all of it")] * 2, results
        assert server.connections == 2  # such a connection cannot carry another request
    finally:
        server.close()


@pytest.mark.parametrize(
    ("response", "words"),
    [
        (b"", "closed connection without response"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", "IncompleteRead(3 bytes read"),
        (b"HTTP/1.1 200 OK\r\n" + b"X-A: 1\r\n" * 101 + b"Content-Length: 0\r\n\r\n", "more than 100 headers"),
        (b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n", "headers are larger than 65536 bytes"),
        (b"HTTP/1.1 200 OK\r\nX-Endless: " + b"a" * 300000, "headers are larger than 65536 bytes"),
        (b"SMTP ready\r\n\r\n", "a malformed response"),
    ],
)
def test_a_broken_or_oversized_response_is_a_connect_error(pool, response, words):
    server = CannedServer(response, close=True)
    try:
        (result,) = send([server.url], timeout=3)
        assert result.response is None and isinstance(result.error, http.ConnectFailed), result
        assert words in str(result.error), result.error
    finally:
        server.close()


def test_a_header_that_would_split_the_request_is_refused(rx, pool):
    bad = http.Outgoing(rx.url, {"X-Optio-Event": "task.created\r\nX-Injected: 1"}, b"{}")
    sending = http.send_all([bad, http.Outgoing(rx.url, {}, b"{}")], executor=pool)
    assert sending.wait(10)
    refused, fine = sending.results
    assert isinstance(refused.error, http.InvalidHeader) and "X-Optio-Event" in refused.error.reason
    assert fine.response.status == 200
    assert len(rx.requests) == 1 and "x-injected" not in rx.requests[0].headers


@pytest.mark.parametrize(
    "headers, words",
    [
        ({"Host": "evil.example"}, "host is set by Optio"),
        ({"content-length": "0"}, "content-length is set by Optio"),
        ({"X-Note": "caf\u00e9 \u20ac"}, "'X-Note' cannot be sent"),
        ({"Bad Name": "x"}, "'Bad Name' cannot be sent"),
    ],
)
def test_headers_optio_sets_or_cannot_send_are_refused(rx, headers, words):
    (result,) = send([rx.url], headers=headers)
    assert isinstance(result.error, http.InvalidHeader) and words in result.error.reason
    assert rx.requests == []


def test_a_non_ascii_path_is_percent_encoded(rx):
    assert send([rx.url + "/caf\u00e9\u20ac?q=1"])[0].response.status == 200
    assert rx.requests[0].path == "/hook/caf%C3%A9%E2%82%AC?q=1"


def test_an_unexpected_error_ends_that_request_not_the_batch(rx, pool, monkeypatch):
    real = http._send

    def flaky(target, item, opts):
        if item.headers.get("X-N") == "1":
            raise RuntimeError("a bug")
        return real(target, item, opts)

    monkeypatch.setattr(http, "_send", flaky)
    results = send([rx.url] * 3, pool)
    assert [r.error is None for r in results] == [True, False, True]
    assert "a bug" in results[1].error.reason


def test_a_shut_down_pool_sends_from_the_calling_thread(rx):
    stopped = ThreadPoolExecutor(2)
    stopped.shutdown()
    sending = http.send_all([http.Outgoing(rx.url, {}, b"{}")] * 3, executor=stopped)
    assert sending.wait(0)
    assert [r.response.status for r in sending.results] == [200, 200, 200]


def test_a_url_with_spaces_or_control_characters_is_refused():
    for url in ("http://example.com/a b", "http://example.com/a\r\nHost: evil", "http://example.com/\x7f"):
        with pytest.raises(http.InvalidUrl, match="spaces or control characters"):
            http.check_url(url)


# --- TLS: verified against the host name, connected to the checked address -------------------


def _certificate(tmp_path, name: str):
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


@pytest.fixture
def tls_server(tmp_path):
    cert_file, key_file = _certificate(tmp_path, "localhost")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Length", "6")
            self.end_headers()
            self.wfile.write(b"secure")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server, cert_file
    server.shutdown()
    server.server_close()


@pytest.fixture
def trusted(monkeypatch):
    def trust(cert_file):
        monkeypatch.setenv("SSL_CERT_FILE", str(cert_file))
        http._tls_context.cache_clear()

    yield trust
    http._tls_context.cache_clear()


def test_https_is_verified_against_the_host_name(tls_server, trusted, pool):
    server, cert_file = tls_server
    trusted(cert_file)
    port = server.server_address[1]
    (result,) = send([f"https://localhost:{port}/hook"], pool)
    assert result.error is None, result.error
    assert result.response.body == b"secure"
    # The same server under a name its certificate does not carry is refused.
    (wrong,) = send([f"https://127.0.0.1:{port}/hook"], pool)
    assert isinstance(wrong.error, http.ConnectFailed) and "TLS" in wrong.error.reason


def test_an_untrusted_certificate_is_refused(tls_server, pool):
    server, _ = tls_server
    http._tls_context.cache_clear()
    (result,) = send([f"https://localhost:{server.server_address[1]}/hook"], pool)
    assert isinstance(result.error, http.ConnectFailed)
    assert "TLS with localhost failed" in result.error.reason
    assert "certificate verify failed" in result.error.reason


@pytest.mark.parametrize(
    "target, header",
    [
        (http.Target("https", "example.com", 443, "93.184.216.34", "/"), "example.com"),
        (http.Target("http", "example.com", 8080, "93.184.216.34", "/"), "example.com:8080"),
        (http.Target("http", "2001:db8::1", 80, "2001:db8::1", "/"), "[2001:db8::1]"),
        (http.Target("https", "2001:db8::1", 8443, "2001:db8::1", "/"), "[2001:db8::1]:8443"),
        (http.Target("https", "bücher.example", 443, "93.184.216.34", "/"), "xn--bcher-kva.example"),
    ],
)
def test_the_host_header_both_paths_send(target, header):
    assert http._host_header(target) == header
