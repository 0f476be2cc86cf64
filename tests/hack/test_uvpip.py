"""hack/uvpip.py: uv configured from pip's settings, so `make` installs what pip would."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.hack.scripts import load

ROOT = Path(__file__).resolve().parents[2]


uvpip = load("uvpip")

THIS_MACHINE = """\
:env:.cert='/etc/ssl/certs/ca-certificates.crt'
:env:.default-timeout='180'
:env:.find-links='/opt/wheels'
global.cert='/etc/ssl/certs/ca-certificates.crt'
global.constraint='/etc/xdg/pip/constraints.txt'
global.extra-index-url='file:///opt/pypi/simple file:///opt/pypi-more/simple'
global.find-links='/opt/wheels'
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", {}),
        ("global.index-url='https://mirror/simple'", {"index-url": "https://mirror/simple"}),
        # a higher scope wins whatever the order of lines: env > site > user > global
        ("site.find-links='/a'\nglobal.find-links='/b'", {"find-links": "/a"}),
        ("global.find-links='/b'\n:env:.find-links='/a'", {"find-links": "/a"}),
        ("user.constraint='/u'\nglobal.constraint='/g'", {"constraint": "/u"}),
        ('global.cert="/c"', {"cert": "/c"}),
        ("not a setting line", {}),
        (
            THIS_MACHINE,
            {
                "cert": "/etc/ssl/certs/ca-certificates.crt",
                "default-timeout": "180",
                "find-links": "/opt/wheels",
                "constraint": "/etc/xdg/pip/constraints.txt",
                "extra-index-url": "file:///opt/pypi/simple file:///opt/pypi-more/simple",
            },
        ),
    ],
)
def test_parse_pip_config(text: str, expected: dict[str, str]) -> None:
    assert uvpip.parse_pip_config(text) == expected


@pytest.mark.parametrize(
    ("config", "environ", "expected"),
    [
        ({}, {}, {"UV_INDEX_STRATEGY": "unsafe-best-match"}),
        (
            uvpip.parse_pip_config(THIS_MACHINE),
            {},
            {
                "UV_INDEX_STRATEGY": "unsafe-best-match",
                "UV_FIND_LINKS": "/opt/wheels",
                "UV_CONSTRAINT": "/etc/xdg/pip/constraints.txt",
                "UV_EXTRA_INDEX_URL": "file:///opt/pypi/simple file:///opt/pypi-more/simple",
                "SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt",
            },
        ),
        # several find-links: uv separates them with commas, pip with whitespace
        (
            {"find-links": "/a  /b"},
            {},
            {"UV_INDEX_STRATEGY": "unsafe-best-match", "UV_FIND_LINKS": "/a,/b"},
        ),
        # what the caller set is kept, pip's setting does not override it
        (
            {"index-url": "https://pip/simple"},
            {"UV_INDEX_URL": "https://mine/simple"},
            {"UV_INDEX_STRATEGY": "unsafe-best-match"},
        ),
        ({}, {"UV_INDEX_STRATEGY": "first-index"}, {}),
        # settings uv has no use for are not carried
        (
            {"default-timeout": "180", "disable-pip-version-check": "1"},
            {},
            {"UV_INDEX_STRATEGY": "unsafe-best-match"},
        ),
    ],
)
def test_uv_environment(
    config: dict[str, str], environ: dict[str, str], expected: dict[str, str]
) -> None:
    assert uvpip.uv_environment(config, environ) == expected


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["install", "-e", "."], ["pip", "install", "-e", "."]),
        (["uninstall", "--yes", "pip", "wheel"], ["pip", "uninstall", "pip", "wheel"]),
        (["uninstall", "-y", "pip"], ["pip", "uninstall", "pip"]),
        # only uninstall's --yes goes; a package named like a flag elsewhere is left alone
        (["install", "--no-deps", "x"], ["pip", "install", "--no-deps", "x"]),
    ],
)
def test_uv_argv(argv: list[str], expected: list[str]) -> None:
    assert uvpip.uv_argv(Path("/uv"), argv) == ["/uv", *expected]
