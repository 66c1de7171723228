"""What an approval costs: signing it (`runbook approve`) and checking it (every look of the
waiting deploy, and `runbook verify`), both through ssh-keygen as the product runs them.

    .venv/bin/python bench/bench_approval.py            # 20 rounds
    .venv/bin/python bench/bench_approval.py --rounds 50

Also the digest of what ships (hashing the configuration and the ten runbooks), which the
deploy computes on every look while it waits.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))

from hotdash_release.decisions import approval  # noqa: E402
from hotdash_release.paths import DEFAULT_CONFIG, RUNBOOKS_DIR  # noqa: E402


def timed(fn, rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    rounds = parser.parse_args().rounds
    with tempfile.TemporaryDirectory() as tmp:
        key = Path(tmp) / "bob"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        kind, blob = Path(f"{key}.pub").read_text().split()[:2]
        signers = Path(tmp) / "allowed_signers"
        signers.write_text(f'bob namespaces="{approval.NAMESPACE}" {kind} {blob}\n')
        a = approval.Approval("r", "d" * 64, "bob", "2026-12-06T05:00:00Z", "ok", "")
        signature = approval.sign(a.statement(), key)
        a = approval.Approval(**{**a.as_row(), "signature": signature})
        payload = dict(
            release_id="r",
            app="hotdash-production",
            image="img",
            config_path=DEFAULT_CONFIG,
            runbooks=RUNBOOKS_DIR,
            decision={"decision": "GO"},
            criteria=[],
        )
        figures = {
            "sign (ssh-keygen -Y sign)": timed(lambda: approval.sign(a.statement(), key), rounds),
            "verify (ssh-keygen -Y verify)": timed(
                lambda: approval.verify_signature(a.statement(), signature, "bob", signers), rounds
            ),
            "digest of what ships": timed(lambda: approval.digest_of(approval.shipping_payload(**payload)), rounds),
        }
    for name, ms in figures.items():
        print(f"{name:32s} median {statistics.median(ms):7.2f} ms   max {max(ms):7.2f} ms   ({rounds} rounds)")


if __name__ == "__main__":
    main()
