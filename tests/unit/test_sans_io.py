"""`protocol/` is sans-IO: importing it must not pull in the network, the loop or the store."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import mailfort.protocol

FORBIDDEN = ("asyncio", "socket", "sqlite3", "mailfort.store", "mailfort.server")

PROBE = """
import importlib, json, pkgutil, sys
import mailfort.protocol as root
names = [root.__name__]
for info in pkgutil.walk_packages(root.__path__, root.__name__ + "."):
    names.append(info.name)
for name in names:
    importlib.import_module(name)
print(json.dumps({"imported": names, "modules": sorted(sys.modules)}))
"""


def test_protocol_imports_no_io_and_no_store() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, check=True
    )
    report = json.loads(done.stdout)
    expected = {
        info.name
        for info in pkgutil.walk_packages(
            mailfort.protocol.__path__, mailfort.protocol.__name__ + "."
        )
    }
    assert expected <= set(report["imported"])
    assert "mailfort.protocol.smtp.replies" in report["imported"]  # the walk found modules
    leaked = sorted(
        module
        for module in report["modules"]
        if any(module == bad or module.startswith(bad + ".") for bad in FORBIDDEN)
    )
    assert leaked == [], f"mailfort.protocol pulled in {leaked}"
