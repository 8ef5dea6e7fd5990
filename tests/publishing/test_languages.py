"""`site.language`: every fixed word a reader sees comes from the gettext catalogues. A German
site's digest (both parts of a real message in the outbox), its pages from the real server and
its confirmation message end to end, with no English chrome left; the shipped catalogue
covers every msgid; a site's own catalogue overrides; an unknown language falls back."""

from __future__ import annotations

import email
import gettext
import io
import re
import subprocess
import sys
from datetime import datetime
from email import policy
from pathlib import Path
from urllib.parse import urlencode, urlsplit
from zoneinfo import ZoneInfo

import lxml.html
from babel.dates import format_date
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from conftest import REPO, html_of, invoke, markdown_entry, messages, text_of, write_entry
from pipeline.core.config import load_config
from pipeline.core.languages import PACKAGE_LOCALES, compile_po
from web_client import request, serving

GERMAN_PO = PACKAGE_LOCALES / "de" / "LC_MESSAGES" / "messages.po"
GERMAN_MO = GERMAN_PO.with_suffix(".mo")
PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")


def used_msgids() -> set[str]:
    """Every msgid the default templates and the package's code use, as `pybabel extract
    -F babel.cfg -k N_` finds them."""
    method_map = [("templates/**.j2", "jinja2"), ("pipeline/**.py", "python")]
    options = {"templates/**.j2": {"extensions": "jinja2.ext.i18n"}}
    keywords = {"_": None, "gettext": None, "ngettext": (1, 2), "N_": None}
    found = set()
    for _, _, message, _, _ in extract_from_dir(str(REPO), method_map, options, keywords):
        found.add(message[0] if isinstance(message, tuple) else message)
    return found


def german() -> dict[str, tuple[str, ...]]:
    """msgid → its translations (one, or one per plural form), from the shipped .po."""
    catalogue = read_po(GERMAN_PO.open("rb"))
    return {(m.id[0] if isinstance(m.id, tuple) else m.id):
            (m.string if isinstance(m.string, tuple) else (m.string,))
            for m in catalogue if m.id and not m.fuzzy}


def english_chrome() -> set[str]:
    """The English words between the placeholders (and tags) of every msgid whose German
    differs: none of them may appear in a German reader's text."""
    pieces = set()
    for msgid, translations in german().items():
        for piece in re.split(r"%\(\w+\)[sd]|<[^>]+>", msgid):
            piece = piece.strip(" .:;?!,“”")
            if len(piece) >= 4 and not any(piece in t for t in translations):
                pieces.add(piece)
    return pieces | set(MONTHS)


def leftover_english(text: str, allowed: tuple[str, ...] = ()) -> list[str]:
    for word in allowed:  # the journal's own (English) title and entries
        text = text.replace(word, "")
    return sorted(p for p in english_chrome() if re.search(rf"\b{re.escape(p)}\b", text))


def shown(html: str) -> str:
    root = lxml.html.document_fromstring(html)
    words = [root.findtext(".//title") or "", root.find("body").text_content()]
    words += [e.get(a, "") for a in ("alt", "title", "aria-label", "placeholder")
              for e in root.iter() if isinstance(e.tag, str)]
    return " ".join(" ".join(words).split())


def in_german(site: Path, extra: str = "") -> Path:
    toml = site / "newsletter.toml"
    toml.write_text(toml.read_text().replace('[site]\n', '[site]\nlanguage = "de"\n', 1)
                    + extra, encoding="utf-8")
    return site


CONTENT = ("Test Clinic Journal", "Erste Notiz über Herz", "Zweite Notiz", "Eine Einleitung",
           "Ein Absatz")


def german_entries(site: Path) -> None:
    body = "Eine Einleitung mit zwei Sätzen. Ein Absatz über Blutdruck und Schlaf."
    write_entry(site, "a.md", markdown_entry(title="Erste Notiz über Herz", date="2026-03-14",
                                             body=body))
    write_entry(site, "b.md", markdown_entry(title="Zweite Notiz", date="2026-06-24",
                                             body=body))


def test_a_german_digest_in_the_outbox_has_german_chrome_dates_and_plurals(site: Path) -> None:
    german_entries(in_german(site))
    code, _, err = invoke("run", "--site", str(site))
    assert code == 0, err
    message = next(m for m in messages(site) if m["To"].addresses[0].addr_spec
                   == "ada@example.org")
    html, text = shown(html_of(message)), text_of(message)
    today = format_date(datetime.now(ZoneInfo("Europe/London")).date(), "long", locale="de")
    for part in (html, " ".join(text.split())):
        assert f"{today} · 2 neue Artikel" in part
        assert "24. Juni 2026 · 1 Min. Lesezeit" in part and "14. März 2026" in part
        assert "Nur zur allgemeinen Information und Aufklärung – keine medizinische " \
               "Beratung." in part
        assert "Sie erhalten diese Nachricht, weil Sie Test Clinic Journal abonniert haben." \
               in part
        assert "Diese Nachricht wurde an ada@example.org gesendet." in part
        assert leftover_english(part, CONTENT) == []
    assert "Ganzen Artikel lesen: Zweite Notiz" in html  # with the screen-reader title
    assert "Abbestellen · Im Browser ansehen" in html
    assert "Ganzen Artikel lesen, „Zweite Notiz“:" in text
    for line in ("Abbestellen:", "Frühere Ausgaben:", "Diese Ausgabe im Browser ansehen:",
                 "Das Journal im Feedreader abonnieren (RSS):"):
        assert line in text.splitlines()
    assert '<html lang="de"' in html_of(message)
    # The public copies are German too: the web copy of the digest and the archive page.
    (copy,) = (site / "public" / "digests").glob("2*.html")
    page = shown(copy.read_text(encoding="utf-8"))
    assert f"Dies ist die Webversion der Ausgabe von Test Clinic Journal vom {today}." in page
    assert leftover_english(page, CONTENT) == []
    archive = shown((site / "public" / "digests" / "index.html").read_text(encoding="utf-8"))
    assert "Frühere Ausgaben" in archive and "2 Artikel" in archive
    assert leftover_english(archive, CONTENT) == []


def test_one_entry_and_one_day_take_the_singular(site: Path) -> None:
    in_german(site, "\n[subscribers]\nconfirm_days = 1\n")
    write_entry(site, "a.md", markdown_entry(title="Erste Notiz über Herz"))
    assert invoke("run", "--site", str(site))[0] == 0
    text = text_of(messages(site)[0])
    assert "· 1 neuer Artikel" in text
    with serving(site) as server:
        code, _, _ = request(server, "POST", "/subscribe",
                             urlencode({"email": "neu@example.org"}).encode())
    assert code == 200
    (confirmation,) = (site / "outbox" / "new").glob("confirm-*.eml")
    body = email.message_from_bytes(confirmation.read_bytes(), policy=policy.default)
    assert "Der Link gilt 1 Tag lang." in body.get_content()


def test_german_pages_from_the_real_server(site: Path) -> None:
    german_entries(in_german(site))
    assert invoke("run", "--site", str(site))[0] == 0
    with serving(site) as server:
        pages = {target: request(server, "GET", target) for target in
                 ("/subscribe", "/unsubscribe?token=forged", "/nowhere")}
        invalid = request(server, "POST", "/subscribe", b"email=not-an-address")
    code, _, page = pages["/subscribe"]
    assert code == 200 and '<html lang="de">' in page
    words = shown(page)
    for phrase in ("Test Clinic Journal abonnieren", "E-Mail-Adresse", "Name (freiwillig)",
                   "Abonnieren", "Wir senden Ihnen eine Nachricht mit einem Bestätigungslink."):
        assert phrase in words
    assert "Dieser Link funktioniert nicht" in shown(pages["/unsubscribe?token=forged"][2])
    assert "Hier gibt es keine Seite." in shown(pages["/nowhere"][2])
    assert invalid[0] == 400
    assert "Das sieht nicht nach einer E-Mail-Adresse aus." in shown(invalid[2])
    for _, _, html in [*pages.values(), invalid]:
        assert leftover_english(shown(html), CONTENT) == [], html


def test_a_german_confirmation_end_to_end(site: Path) -> None:
    german_entries(in_german(site))
    assert invoke("run", "--site", str(site))[0] == 0
    with serving(site) as server:
        code, _, thanks = request(server, "POST", "/subscribe",
                                  urlencode({"email": "leser@example.org"}).encode())
        assert code == 200 and "Bitte sehen Sie in Ihr Postfach" in shown(thanks)
        (path,) = (site / "outbox" / "new").glob("confirm-*.eml")
        message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        body = message.get_content()
        url = re.search(r"https://\S+", body).group(0)
        link = "{0.path}?{0.query}".format(urlsplit(url))
        asked = shown(request(server, "GET", link)[2])
        done = shown(request(server, "POST", link, b"confirm=yes")[2])
    assert message["Subject"] == "Bitte bestätigen Sie Ihr Abonnement von Test Clinic Journal"
    assert "Jemand (hoffentlich Sie) möchte Test Clinic Journal an leser@example.org " \
           "erhalten." in " ".join(body.split())
    assert "Der Link gilt 7 Tage lang." in body
    assert leftover_english(f"{message['Subject']} {body}", CONTENT) == []
    assert "Abonnement bestätigen" in asked and "Ja, ich möchte abonnieren" in asked
    assert "Abonnement bestätigt" in done and "Vielen Dank!" in done
    assert leftover_english(asked + done, CONTENT) == []


def test_every_msgid_used_is_translated_in_the_german_catalogue() -> None:
    used, shipped = used_msgids(), german()
    assert len(used) > 60  # the extraction found the templates and the code
    missing = sorted(m for m in used if not any(shipped.get(m, ("",))))
    assert missing == [], "add these to de/LC_MESSAGES/messages.po (README: Languages)"
    for msgid, translations in shipped.items():
        for translation in translations:  # the same placeholders, so no value is lost
            assert set(PLACEHOLDER.findall(translation)) <= set(PLACEHOLDER.findall(msgid)), \
                msgid
            assert set(PLACEHOLDER.findall(msgid)) - {"num"} <= \
                set(PLACEHOLDER.findall(translation)), msgid
    assert sorted(set(shipped) - used) == []  # nothing stale
    # The template a site starts a new language from lists them all too.
    template = read_po((PACKAGE_LOCALES / "messages.pot").open("rb"))
    assert {m.id[0] if isinstance(m.id, tuple) else m.id for m in template if m.id} == used


def test_the_committed_mo_is_the_compiled_po() -> None:
    committed = gettext.GNUTranslations(GERMAN_MO.open("rb"))
    compiled = gettext.GNUTranslations(io.BytesIO(compile_po(GERMAN_PO.read_bytes())))
    # The header (msgid "") is rewritten by Babel on every compile (its creation date).
    assert ({k: v for k, v in committed._catalog.items() if k}
            == {k: v for k, v in compiled._catalog.items() if k}), (
        "run `pybabel compile -d pipeline/core/locales -D messages` and commit the .mo")


def test_a_sites_own_catalogue_overrides_phrases_and_keeps_the_rest(site: Path) -> None:
    folder = site / "locales" / "de" / "LC_MESSAGES"
    folder.mkdir(parents=True)
    (folder / "messages.po").write_text(
        'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n\n'
        'msgid "Read the full article"\nmsgstr "Weiterlesen"\n', encoding="utf-8")
    german_entries(in_german(site))
    assert invoke("run", "--site", str(site))[0] == 0
    html = shown(html_of(messages(site)[0]))
    assert "Weiterlesen: Zweite Notiz" in html and "Ganzen Artikel lesen" not in html
    assert "Im Browser ansehen" in html  # the package's catalogue under the site's


def test_an_unknown_language_warns_and_falls_back_to_english(site: Path) -> None:
    toml = site / "newsletter.toml"
    toml.write_text(toml.read_text().replace("[site]\n", '[site]\nlanguage = "xx"\n', 1))
    (warning,) = [w for w in load_config(site).warnings if w.field == "site.language"]
    assert "no catalogue for 'xx'" in warning.problem and "de, en" in warning.hint
    write_entry(site, "a.md", markdown_entry())
    code, _, err = invoke("run", "--site", str(site))
    assert code == 0 and "site.language" in err
    text = text_of(messages(site)[0])
    assert "Read the full article" in text and "This message was sent to" in text


def test_a_value_that_is_no_language_tag_warns_too(site: Path) -> None:
    toml = site / "newsletter.toml"
    toml.write_text(toml.read_text().replace("[site]\n", '[site]\nlanguage = "../de"\n', 1))
    assert [w.field for w in load_config(site).warnings] == ["site.language"]


def test_english_is_the_default_and_needs_no_warning(site: Path) -> None:
    assert [w for w in load_config(site).warnings if w.field == "site.language"] == []
    in_german(site)
    assert [w for w in load_config(site).warnings if w.field == "site.language"] == []


def test_a_german_run_with_nothing_to_do_imports_no_babel(site: Path) -> None:
    in_german(site)
    write_entry(site, "a.md", markdown_entry())
    command = [sys.executable, "-X", "importtime", "-m", "pipeline", "run", "--site", str(site),
               "--quiet"]
    env = {"NEWSLETTER_SECRET": "quiet-run-secret-0123456789-abcdefghij", "PATH": "/usr/bin"}
    assert subprocess.run(command, env=env, capture_output=True).returncode == 0
    quiet = subprocess.run(command, env=env, capture_output=True, text=True)
    assert quiet.returncode == 0
    imported = {line.rsplit("|", 1)[-1].strip() for line in quiet.stderr.splitlines()
                if line.startswith("import time:")}
    assert "babel" not in imported and "jinja2" not in imported


def test_a_broken_site_catalogue_stops_the_run_naming_the_file(site: Path) -> None:
    folder = site / "locales" / "de" / "LC_MESSAGES"
    folder.mkdir(parents=True)
    (folder / "messages.mo").write_bytes(b"not a catalogue")
    german_entries(in_german(site))
    code, _, err = invoke("run", "--site", str(site))
    assert code == 78
    assert "locales/de/LC_MESSAGES/messages.mo: catalogue: cannot be read" in err
    assert "pybabel compile" in err and not (site / "outbox").exists()
