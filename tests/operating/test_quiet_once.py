"""`--quiet` reports a problem once, when it appears (and again when it changes); `status`
lists every problem still open. Real runs of a real site, one after another, as cron makes
them."""

from __future__ import annotations

from pathlib import Path

from conftest import Inbox, invoke, markdown_entry, smtp_server, use_relay, write_entry

BROKEN = "---\ntitle: [unclosed\n---\nbody\n"


def quiet_run(site: Path) -> tuple[int, str, str]:
    return invoke("run", "--site", str(site), "--quiet")


def test_a_broken_entry_is_reported_by_the_first_quiet_run_only(site: Path) -> None:
    write_entry(site, "good.md", markdown_entry())
    write_entry(site, "broken.md", BROKEN)

    code, out, err = quiet_run(site)  # run 1: the problem appears
    assert code == 1 and out == ""
    assert "articles/broken.md" in err and err.count("\n") == 1

    code, out, err = quiet_run(site)  # run 2: nothing changed, nothing printed
    assert (code, out, err) == (1, "", "")  # the exit code still tells scripts
    status = invoke("status", "--site", str(site))[1]
    assert "Open problems (1)" in status and "articles/broken.md" in status

    write_entry(site, "broken.md", "---\ntitle: Fine\ndate: not a date\n---\nbody\n")
    code, out, err = quiet_run(site)  # run 3: it changed, so it is news again
    assert code == 1 and "articles/broken.md" in err and "date" in err

    code, out, err = quiet_run(site)  # run 4: quiet again
    assert err == ""

    (site / "articles" / "broken.md").unlink()
    assert quiet_run(site) == (0, "", "")
    assert "Open problems" not in invoke("status", "--site", str(site))[1]

    write_entry(site, "broken.md", BROKEN)  # a problem that comes back is news again
    assert "articles/broken.md" in quiet_run(site)[2]


def test_without_quiet_every_run_still_prints_every_problem(site: Path) -> None:
    write_entry(site, "broken.md", BROKEN)
    for _ in range(3):
        assert "articles/broken.md" in invoke("run", "--site", str(site))[2]


def test_a_config_warning_with_run_send_is_printed_once_not_twice_a_run(
        site: Path, port: int) -> None:
    toml = site / "newsletter.toml"
    toml.write_text(toml.read_text().replace("[digest]", "[digest]\nmax_artikles = 3"))
    use_relay(site, port)
    write_entry(site, "a.md", markdown_entry())
    with smtp_server(Inbox(), port):
        runs = [invoke("run", "--site", str(site), "--quiet", "--send") for _ in range(3)]
    assert [code for code, _, _ in runs] == [0, 0, 0]
    assert runs[0][2].count("digest.max_artikles: unknown key") == 1
    assert runs[1][2] == runs[2][2] == ""
    assert "digest.max_artikles" in invoke("status", "--site", str(site))[1]
