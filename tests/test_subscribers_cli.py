"""`newsletter subscribers ...`, `newsletter form-snippet` and `serve --help`, via CliRunner."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from helpers import confirm_link, read_outbox, snapshot, text_part

from pipeline.cli import cli
from pipeline.settings import Settings
from subscribers.models import Consent, NewSubscriber
from subscribers.store import Store
from subscribers.validation import email_hash

COMMANDS = [
    ["subscribers"],
    ["subscribers", "add"],
    ["subscribers", "list"],
    ["subscribers", "remove"],
    ["subscribers", "import"],
    ["subscribers", "export"],
    ["subscribers", "stats"],
    ["serve"],
    ["form-snippet"],
]


@pytest.fixture
def run(project: Path, test_env: dict[str, str]) -> Iterator[object]:
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None) -> Result:
        config = ["--config", str(project / "newsletter.toml")]
        return runner.invoke(cli, [*config, *args], env=test_env, input=input)

    yield invoke


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    with Store.from_settings(settings) as st:
        yield st


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# ---- help ------------------------------------------------------------------------------


@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(c) for c in COMMANDS])
def test_every_command_has_help_with_an_example(run: object, command: list[str]) -> None:
    result = run(*command, "--help")
    assert result.exit_code == 0, result.output
    assert "Example" in result.output and "newsletter " in result.output


# ---- add -------------------------------------------------------------------------------


def test_add_creates_a_pending_subscriber_and_mails_a_confirmation(
    run: object, store: Store, settings: Settings
) -> None:
    result = run("subscribers", "add", "Ann@Example.com", "--name", "Ann", "--topic", "updates")
    assert result.exit_code == 0, result.output
    assert "added Ann@example.com (pending; topics: updates; confirmation email sent)" in (
        result.output
    )
    sub = store.find("ann@example.com")
    assert (sub.status, sub.topics, sub.name) == ("pending", ("updates",), "Ann")
    [msg] = read_outbox(settings.outbox_dir)
    assert "/confirm/" in confirm_link(text_part(msg))


def test_add_confirmed_needs_a_consent_source(run: object, store: Store) -> None:
    result = run("subscribers", "add", "bo@example.com", "--confirmed")
    assert result.exit_code == 1 and "--consent-source" in result.output
    assert store.count() == 0
    result = run(
        "subscribers", "add", "bo@example.com", "--confirmed", "--consent-source", "seminar sheet"
    )
    assert result.exit_code == 0, result.output
    assert store.find("bo@example.com").status == "active"
    assert store.consents_for(store.find("bo@example.com").id)[0]["wording"] == "seminar sheet"


def test_add_refuses_existing_and_suppressed_addresses(run: object, store: Store) -> None:
    assert run("subscribers", "add", "bo@example.com", "--no-email").exit_code == 0
    result = run("subscribers", "add", "BO@example.com", "--no-email")
    assert result.exit_code == 1 and "already in the store" in result.output
    store.suppress("gone@example.com", "bounced")
    result = run("subscribers", "add", "gone@example.com", "--no-email")
    assert result.exit_code == 1 and "suppression list" in result.output
    assert store.count() == 1


@pytest.mark.parametrize(
    "args",
    [
        ["not-an-address"],
        ["a@example.com", "--topic", "gossip"],
        ["a@example.com", "--name", "A\nB"],
    ],
    ids=["address", "topic", "name"],
)
def test_add_with_bad_input_is_a_clean_error(run: object, store: Store, args: list[str]) -> None:
    result = run("subscribers", "add", *args, "--no-email")
    assert result.exit_code == 1 and result.output.startswith("error: ")
    assert "Traceback" not in result.output
    assert store.count() == 0


# ---- list, stats -----------------------------------------------------------------------


def test_list_and_stats(run: object, store: Store) -> None:
    for email in ("a@example.com", "b@example.com"):
        store.add_many(
            [NewSubscriber(email, "", ("updates",))],
            confirmed=True,
            consent=Consent("import", "t"),
        )
    store.signup("c@example.com", "Cy", ["offers"], Consent("signup", "t"))
    result = run("subscribers", "list", "--status", "active")
    assert result.exit_code == 0, result.output
    assert "a@example.com" in result.output and "c@example.com" not in result.output
    assert result.output.strip().endswith("2 shown; 2 active")
    assert "c@example.com (Cy)" in run("subscribers", "list", "--topic", "offers").output
    assert run("subscribers", "list", "--limit", "1").output.strip().endswith("1 shown; 3 in total")
    stats = run("subscribers", "stats")
    assert stats.exit_code == 0
    assert "3 subscribers, 2 active" in stats.output
    assert "mailable updates" in stats.output


# ---- remove ----------------------------------------------------------------------------


def test_remove_unsubscribes(run: object, store: Store) -> None:
    run("subscribers", "add", "a@example.com", "--confirmed", "--consent-source", "x")
    result = run("subscribers", "remove", "A@example.com")
    assert result.exit_code == 0 and "unsubscribed" in result.output
    assert store.find("a@example.com").status == "unsubscribed"
    missing = run("subscribers", "remove", "nobody@example.com")
    assert missing.exit_code == 1 and "not in the store" in missing.output


def test_remove_erase_keeps_only_a_suppression_hash(run: object, store: Store) -> None:
    run("subscribers", "add", "a@example.com", "--confirmed", "--consent-source", "x")
    assert run("subscribers", "remove", "a@example.com", "--erase", input="n\n").exit_code == 1
    assert store.find("a@example.com") is not None
    result = run("subscribers", "remove", "a@example.com", "--erase", "--yes")
    assert result.exit_code == 0 and "suppression hash" in result.output
    tables = snapshot(store)
    assert tables["subscribers"] == [] and tables["consents"] == []
    assert "a@example.com" not in json.dumps(tables)
    assert [row[0] for row in tables["suppressions"]] == [email_hash("a@example.com")]
    again = run("subscribers", "add", "a@example.com", "--no-email")
    assert again.exit_code == 1 and "suppression list" in again.output


# ---- import ----------------------------------------------------------------------------


def test_import_a_good_file(run: object, store: Store, tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "readers.csv",
        "email,name,topics\n"
        "ann@example.com,Ann,updates\n"
        'bo@example.com,"Bo, the Second",updates offers\n'
        "cy@bücher.de,,\n",
    )
    result = run("subscribers", "import", str(path))
    assert result.exit_code == 0, result.output
    assert "3 rows read; added 3 (pending)" in result.output
    assert store.find("bo@example.com").name == "Bo, the Second"
    assert store.find("cy@xn--bcher-kva.de").topics == ("offers", "updates")
    consent = store.consents_for(store.find("ann@example.com").id)[0]
    assert consent["kind"] == "import" and consent["source"] == "import:readers.csv"


def test_bad_rows_are_reported_by_line_and_nothing_is_imported(
    run: object, store: Store, tmp_path: Path
) -> None:
    path = tmp_path / "mixed.csv"
    path.write_bytes(
        b"email,name,topics\n"
        b"ann@example.com,Ann,updates\n"  # line 2
        b"not-an-address,X,updates\n"  # line 3
        b'bo@example.com,"Bo\nsecond line",updates\n'  # lines 4-5: a quoted line break
        b"cy@example.com,Cy,gossip\n"  # line 6
        b"dee@example.com,D\xe9e,updates\n"  # line 7: Latin-1, not UTF-8
        b"eve@example.com,Eve,updates,extra\n"  # line 8
        b"fay@example.com,Fay,\n"  # line 9
    )
    result = run("subscribers", "import", str(path))
    assert result.exit_code == 1
    for line in (3, 4, 6, 7, 8):
        assert f"{path}:{line}: " in result.output, line
    assert f"{path}:2:" not in result.output and f"{path}:9:" not in result.output
    assert "5 bad row(s)" in result.output and "nothing imported" in result.output
    assert store.count() == 0


def test_skip_invalid_imports_the_good_rows(run: object, store: Store, tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "m.csv", "email,name\nann@example.com,Ann\nbroken\nbo@example.com,Bo\n"
    )
    result = run("subscribers", "import", str(path), "--skip-invalid")
    assert result.exit_code == 0, result.output
    assert f"{path}:3: " in result.output
    assert "added 2 (pending)" in result.output and "1 bad (skipped)" in result.output
    assert store.count() == 2


def test_dry_run_writes_nothing(run: object, store: Store, tmp_path: Path) -> None:
    store.signup("ann@example.com", "", ["updates"], Consent("signup", "t"))
    path = write_csv(tmp_path / "r.csv", "email\nann@example.com\nbo@example.com\n")
    before = snapshot(store)
    result = run("subscribers", "import", str(path), "--dry-run")
    assert result.exit_code == 0, result.output
    assert "dry run, nothing written" in result.output
    assert "would add 1 (pending)" in result.output and "1 already present" in result.output
    assert snapshot(store) == before


def test_confirmed_import_needs_a_consent_source(run: object, store: Store, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "w.csv", "email\nann@example.com\n")
    result = run("subscribers", "import", str(path), "--confirmed")
    assert result.exit_code == 1 and "--consent-source" in result.output
    assert store.count() == 0
    result = run(
        "subscribers", "import", str(path), "--confirmed", "--consent-source", "webinar form"
    )
    assert result.exit_code == 0 and "added 1 (active)" in result.output
    ann = store.find("ann@example.com")
    assert ann.status == "active" and ann.confirmed_at is not None
    assert store.consents_for(ann.id)[0]["wording"] == "webinar form"


def test_import_leaves_present_and_suppressed_addresses_alone(
    run: object, store: Store, tmp_path: Path
) -> None:
    sid = store.signup("ann@example.com", "", ["updates"], Consent("signup", "t")).subscriber_id
    store.unsubscribe(sid, source="one-click")
    store.suppress("gone@example.com", "bounced")
    path = write_csv(
        tmp_path / "r.csv", "email\nann@example.com\ngone@example.com\nnew@example.com\n"
    )
    result = run("subscribers", "import", str(path), "--confirmed", "--consent-source", "x")
    assert "added 1 (active)" in result.output and "1 already present" in result.output
    assert "1 suppressed (skipped)" in result.output
    assert store.get(sid).status == "unsubscribed"
    assert store.find("gone@example.com") is None


def test_duplicates_in_a_file_are_reported_and_skipped(
    run: object, store: Store, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "d.csv", "email\nann@example.com\nANN@example.com\n")
    result = run("subscribers", "import", str(path))
    assert result.exit_code == 0
    assert f"{path}:3: duplicate" in result.output and "1 duplicates (skipped)" in result.output
    assert store.count() == 1


def test_send_confirmation_mails_new_pending_rows(
    run: object, tmp_path: Path, settings: Settings
) -> None:
    path = write_csv(tmp_path / "r.csv", "email\nann@example.com\nbo@example.com\n")
    result = run("subscribers", "import", str(path), "--send-confirmation")
    assert result.exit_code == 0 and "2 confirmation emails sent" in result.output
    assert sorted(m["To"] for m in read_outbox(settings.outbox_dir)) == [
        "ann@example.com",
        "bo@example.com",
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "empty"), ("name,topics\nAnn,updates\n", "no 'email' column")],
    ids=["empty", "no-email-column"],
)
def test_a_file_without_a_usable_header_is_a_clear_error(
    run: object, tmp_path: Path, text: str, message: str
) -> None:
    path = write_csv(tmp_path / "h.csv", text)
    result = run("subscribers", "import", str(path))
    assert result.exit_code == 1 and f"{path}:1: " in result.output and message in result.output


def test_a_large_import_streams_in_batches(run: object, store: Store, tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    with path.open("w") as fh:
        fh.write("email,name,topics\n")
        for i in range(5000):
            fh.write(f"reader{i}@example.com,Reader {i},updates\n")
    result = run("subscribers", "import", str(path), "--confirmed", "--consent-source", "old list")
    assert result.exit_code == 0, result.output
    assert "5000 rows read; added 5000 (active)" in result.output
    assert store.count("active") == 5000
    assert sum(1 for _ in store.eligible_recipients("updates")) == 5000


# ---- export ----------------------------------------------------------------------------


def test_export_csv_holds_everything_including_consent(
    run: object, store: Store, tmp_path: Path
) -> None:
    consent = Consent("signup", "article", "If you want ...", "203.0.113.9", "UA/9")
    sid = store.signup("ann@example.com", "Ann", ["updates"], consent).subscriber_id
    store.confirm(sid, "ann@example.com", Consent("confirm", "confirmation link", ip="1.2.3.4"))
    out = tmp_path / "out.csv"
    result = run("subscribers", "export", "-o", str(out))
    assert result.exit_code == 0 and "exported 1 subscriber(s) as csv" in result.output
    [row] = list(csv.DictReader(out.open(encoding="utf-8")))
    assert row["email"] == "ann@example.com" and row["status"] == "active"
    assert row["topics"] == "updates" and row["confirmed_at"]
    assert row["consent_kind"] == "confirm" and row["consent_ip"] == "1.2.3.4"
    consents = json.loads(row["consents_json"])
    assert consents[0]["ip"] == "203.0.113.9" and consents[0]["wording"] == "If you want ..."
    assert "confirmed" in row["events_json"]


def test_export_json_to_stdout_for_one_address(run: object, store: Store) -> None:
    for email in ("ann@example.com", "bo@example.com"):
        store.signup(email, "", ["updates"], Consent("signup", "article", "words"))
    result = run("subscribers", "export", "--format", "json", "--email", "BO@example.com")
    assert result.exit_code == 0
    data = json.loads(io.StringIO(result.stdout).read())
    assert [r["email"] for r in data] == ["bo@example.com"]
    assert data[0]["consents"][0]["wording"] == "words"
    assert "exported 1 subscriber(s) as json to stdout" in result.stderr


def test_export_of_an_empty_store_is_valid_json(run: object) -> None:
    result = run("subscribers", "export", "--format", "json")
    assert json.loads(result.stdout) == []


# ---- form-snippet ----------------------------------------------------------------------


def test_form_snippet_prints_a_form_that_works_without_javascript(run: object) -> None:
    result = run("form-snippet")
    assert result.exit_code == 0
    html = result.stdout
    assert '<form class="nl-form" method="post" action="http://127.0.0.1:8000/subscribe"' in html
    assert (
        "If you want to be notified of new content updates and program offers, fill out the form"
        in html
    )
    assert 'name="website"' in html and 'name="form" value="article"' in html
    assert "<script" not in html
    assert "posts to http://127.0.0.1:8000/subscribe" in result.stderr


def test_form_snippet_next_must_be_on_the_site(run: object) -> None:
    good = run("form-snippet", "--next", "https://hingestrength.example.com/thanks")
    assert 'name="next" value="https://hingestrength.example.com/thanks"' in good.stdout
    bad = run("form-snippet", "--next", "https://evil.example/")
    assert bad.exit_code == 1 and "must be a page on" in bad.output
