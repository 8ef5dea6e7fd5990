"""Unsubscribe tokens: bound to their address, URL-safe, stable, and those already sent keep
working."""

from __future__ import annotations

from pipeline.mail.tokens import token_matches, unsubscribe_token


def test_token_matches_only_its_own_address() -> None:
    secret = b"test-secret"
    token = unsubscribe_token(secret, "ada@example.org")
    assert token_matches(secret, "ada@example.org", token)
    assert token_matches(secret, "Ada@Example.ORG", token)  # addresses compare case-insensitively
    assert not token_matches(secret, "grace@example.org", token)
    assert not token_matches(b"another-secret", "ada@example.org", token)
    assert not token_matches(secret, "ada@example.org", token[:-1])
    assert not token_matches(secret, "ada@example.org", "")


def test_tokens_are_url_safe_stable_and_distinct() -> None:
    secret = b"test-secret"
    tokens = {unsubscribe_token(secret, f"p{n}@example.org") for n in range(200)}
    assert len(tokens) == 200
    assert all(t.isascii() and set(t) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") for t in tokens)


def test_tokens_already_sent_keep_working() -> None:
    # Links in delivered mail must stay valid: the token for an address never changes.
    assert unsubscribe_token(b"test-secret", "ada@example.org") == "8TkGBLkYJkjzfOS-wZ3lbcMr"
    assert token_matches(b"test-secret", "grace@example.org", "qbFIJj_rj9IQ5qglv9siHEra")
