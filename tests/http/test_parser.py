"""The request parser on its own (http/parser.py): the request heads it builds, field by field."""

from __future__ import annotations

import pytest

from aioworker.http.parser import END, RequestHead, RequestParser


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(
            b"GET /a%20b?x=1#f HTTP/1.1\r\nHost: h\r\nX-Y: z \t\r\n\r\n",
            RequestHead(
                "GET", b"/a%20b", b"x=1", "1.1", [(b"host", b"h"), (b"x-y", b"z")], True, 0, False
            ),
            id="get",
        ),
        pytest.param(
            b"POST http://h/p?q HTTP/1.0\r\nContent-Length: 0\r\nExpect: 100-continue\r\n\r\n",
            RequestHead(
                "POST",
                b"/p",
                b"q",
                "1.0",
                [(b"content-length", b"0"), (b"expect", b"100-continue")],
                False,
                0,
                False,
            ),
            id="absolute-form-1.0",
        ),
        pytest.param(
            b"PUT /u HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
            b"Expect: 100-Continue\r\n\r\n",
            RequestHead(
                "PUT",
                b"/u",
                b"",
                "1.1",
                [(b"host", b"h"), (b"transfer-encoding", b"chunked"), (b"expect", b"100-Continue")],
                True,
                None,
                True,
            ),
            id="chunked-expect",
        ),
        pytest.param(
            b"GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n",
            RequestHead(
                "GET",
                b"/",
                b"",
                "1.1",
                [(b"host", b"h"), (b"x-forwarded-for", b"1.2.3.4")],
                True,
                0,
                False,
            ),
            id="proxy-header",
        ),
    ],
)
def test_every_field_of_a_parsed_head(raw: bytes, expected: RequestHead) -> None:
    # The parser fills RequestHead's slots without calling __init__: a slot it forgets is
    # unset (AttributeError here) rather than defaulted.
    events = RequestParser().feed(raw)
    head = events[0]
    assert isinstance(head, RequestHead)
    for field in RequestHead.__slots__:
        assert getattr(head, field) == getattr(expected, field), field
    # RequestHead.__init__ works out `forwarded` from the headers like the parser does.
    assert head.forwarded == any(name.startswith(b"x-forwarded") for name, _ in head.headers)
    if expected.content_length == 0:
        assert events[1:] == [END]
