"""`newsletter serve` as an operator runs it: the real command in a process of its own, on
127.0.0.1 and a free port, stopped by SIGTERM as systemd stops it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from pipeline.run import run
from web_client import request


def test_serve_answers_and_stops_cleanly_on_sigterm(site: Path) -> None:
    run(site)
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "serve", "--site", str(site), "--port", "0",
         "--threads", "2"],
        env={**os.environ, "NEWSLETTER_SECRET": "test-secret-for-this-site-0123456789"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = process.stdout.readline()
        port = re.search(r"http://127\.0\.0\.1:(\d+)/ with 2 threads", first)
        assert port, first + process.stderr.read()
        code, _, page = request(f"127.0.0.1:{port[1]}", "GET", "/subscribe")
        assert code == 200 and "<form" in page
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0
    finally:
        if process.poll() is None:
            process.kill()
    err = process.stderr.read()
    assert '"GET /subscribe" 200 ' in err  # the access log, on stderr
    assert "Traceback" not in err


def test_a_broken_confirmation_template_stops_serve_at_start(site: Path) -> None:
    (site / "templates").mkdir()
    (site / "templates" / "confirmation.txt.j2").write_text("Hello {{ confirm_link }}\n")
    done = subprocess.run([sys.executable, "-m", "pipeline", "serve", "--site", str(site),
                           "--port", "0"], env={**os.environ, "NEWSLETTER_SECRET": "x"},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 78
    assert "templates/confirmation.txt.j2" in done.stderr and "confirm_link" in done.stderr
