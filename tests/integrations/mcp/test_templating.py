import pytest

from integrations.mcp import templating


def test_references_in_order_without_duplicates():
    assert templating.references("{{B}}-{{A}}-{{ B }}") == ["B", "A"]
    assert templating.references("no references") == []
    assert templating.references_in(["{{Y}}", "{{Y}}{{X}}"]) == ["X", "Y"]


@pytest.mark.parametrize("value", ["{{}}", "{{a-b}}", "{{1ABC}}", "x {{ A B }}", "{{A", "a}}{{"])
def test_malformed_references_are_refused(value):
    with pytest.raises(templating.InvalidReference):
        templating.references(value)


def test_single_braces_are_plain_text():
    assert templating.render('{"a": 1} {X} }}', {}) == '{"a": 1} {X} }}'


def test_render_names_every_missing_secret_and_never_passes_it_through():
    with pytest.raises(templating.MissingSecrets) as exc:
        templating.render("{{A}}:{{B}}:{{C}}", {"B": "b"})
    assert exc.value.names == ["A", "C"]


def test_render_inserts_values_verbatim():
    assert templating.render("{{A}}/{{B}}", {"A": "{{B}}", "B": r"\1$&"}) == r"{{B}}/\1$&"
