"""The integrity role's AIDE pieces without a lab: the module's report parsing, aide's own config check."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

from .conftest import ROLES

# aide 0.18.3's --check report (Debian 12), as it prints an added setuid file and a changed one
REPORT = """\
Start timestamp: 2026-12-03 18:47:41 +0000 (AIDE 0.18.3)
AIDE found differences between database and filesystem!!

Summary:
  Total number of entries:\t3
  Added entries:\t\t1
  Removed entries:\t\t1
  Changed entries:\t\t1

---------------------------------------------------
Added entries:
---------------------------------------------------

f+++++++++++++++++: /usr/local/bin/rootshell

---------------------------------------------------
Removed entries:
---------------------------------------------------

f-----------------: /usr/bin/gone

---------------------------------------------------
Changed entries:
---------------------------------------------------

f > ... ....H     : /usr/bin/rgrep

---------------------------------------------------
Detailed information about changes:
---------------------------------------------------

File: /usr/bin/rgrep
 Size      : 2                                | 4

---------------------------------------------------
The attributes of the (uncompressed) database(s):
---------------------------------------------------

/var/lib/aide/dualdc.db
 SHA256    : psYhV7TOSgpHjwWKuNsqXS7mPMxrwbSI
"""


def module() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "dualdc_aide", ROLES / "integrity" / "library" / "dualdc_aide.py"
    )
    assert spec is not None and spec.loader is not None
    found = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(found)
    return found


def test_the_report_becomes_one_line_per_file() -> None:
    assert module().parse(REPORT) == [
        "added /usr/local/bin/rootshell",
        "removed /usr/bin/gone",
        "changed /usr/bin/rgrep",
    ]
    assert module().parse("AIDE found NO differences between database and filesystem. Looks okay!!\n") == []


@pytest.mark.skipif(shutil.which("aide") is None, reason="aide is not installed here (the lab tests run it)")
def test_the_rendered_configuration_is_accepted_by_aide(renderer: object, tmp_path: Path) -> None:
    text = renderer.render("integrity", "dualdc.conf.j2", "gj-log-01")  # type: ignore[attr-defined]
    conf = tmp_path / "dualdc.conf"
    conf.write_text(text, encoding="utf-8")
    done = subprocess.run(
        ["aide", "--config-check", "--config", str(conf)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
