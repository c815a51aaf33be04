"""Install the system parts the test suite needs that pip cannot: Debian's chromium (browser tests).

Run by `make test` before pytest. Never runs `playwright install` (it downloads its own browser,
which this project does not use): Playwright drives /usr/bin/chromium.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

PACKAGES = {"/usr/bin/chromium": "chromium"}


def main() -> int:
    missing = [package for path, package in PACKAGES.items() if not os.path.exists(path)]
    if not missing:
        return 0
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        # A laptop without apt or root: the browser tests skip (and fail under CI=true).
        print(f"note: cannot install {', '.join(missing)} (needs apt-get as root)", file=sys.stderr)
        return 0
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
        check=True,
        env=env,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
