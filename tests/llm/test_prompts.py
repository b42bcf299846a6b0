"""Prompt templates (loading, rendering, errors) and the output validators."""

import pytest

from tfrs_llmrec.llm import PromptError, available_prompts, load_prompt, parse_json_string_list
from tfrs_llmrec.llm.prompts import parse_template


def test_packaged_templates_load_with_their_fields():
    assert available_prompts() == {"item_motivation": [1], "user_interests": [1]}
    motivation = load_prompt("item_motivation", 1)
    assert motivation.identity == "item_motivation.v1" and motivation.fields == {"title", "description"}
    interests = load_prompt("user_interests", 1)
    assert interests.fields == {"history", "max_interests"}
    messages = motivation.render(title="Zelda", description="An adventure", unused="ignored")
    assert [m["role"] for m in messages] == ["system", "user"]
    assert "Title: Zelda\nDescription: An adventure" in messages[1]["content"]
    assert "JSON list" in messages[0]["content"] and "3 to 5" in messages[1]["content"]
    assert "at most 4 short phrases" in interests.render(history="1. A", max_interests=4)[1]["content"]


def test_a_missing_field_names_the_template_and_the_field():
    with pytest.raises(PromptError, match=r"prompt item_motivation\.v1 .*needs field \{description\}.*given fields: title"):
        load_prompt("item_motivation", 1).render(title="x")


def test_an_unknown_version_lists_the_ones_there_are(tmp_path):
    with pytest.raises(PromptError, match=r"item_motivation\.v9 not found .*available: v1"):
        load_prompt("item_motivation", 9)
    (tmp_path / "custom.v2.txt").write_text("Say {thing}.", encoding="utf-8")
    with pytest.raises(PromptError, match="available: v2"):
        load_prompt("custom", 1, directory=tmp_path)
    with pytest.raises(PromptError, match="lower-case"):
        load_prompt("../secrets", 1)


def test_a_file_without_sections_is_one_user_message_and_braces_can_be_escaped(tmp_path):
    (tmp_path / "custom.v2.txt").write_text('Answer {{"k": [..]}} about {thing}.\n', encoding="utf-8")
    template = load_prompt("custom", 2, directory=tmp_path)
    assert template.render(thing="cats") == [{"role": "user", "content": 'Answer {"k": [..]} about cats.'}]


@pytest.mark.parametrize("text, message", [
    ("Hi {0}", "not a plain name"),
    ("Hi {}", "not a plain name"),
    ("Hi {user.name}", "not a plain name"),
    ("Hi {name!r}", "not a plain name"),
    ("Hi {name:>10}", "not a plain name"),
    ("Hi {name", "literal braces"),
    ("[system]\nBe brief.", "no \\[user\\] section"),
    ("[user]\na\n[user]\nb", "two \\[user\\] sections"),
    ("intro\n[user]\nb", "text before its first"),
    ("[system]\n\n[user]\nb", "empty \\[system\\] section"),
])
def test_malformed_templates_are_rejected_with_the_template_named(text, message):
    with pytest.raises(PromptError, match=message) as raised:
        parse_template(text, "demo", 3)
    assert "demo.v3" in str(raised.value)


@pytest.mark.parametrize("text, expected", [
    ('["a", "b"]', ["a", "b"]),
    ('```json\n["a", "b"]\n```', ["a", "b"]),
    ('Sure, here you go:\n["a",  " b  c ", "A", ""]\nHope it helps.', ["a", "b c"]),
    ('{"motivations": ["x", "y"]}', ["x", "y"]),
    ('["1", "2", "3", "4", "5", "6", "7"]', ["1", "2", "3", "4", "5"]),
])
def test_string_lists_are_extracted_and_cleaned(text, expected):
    assert parse_json_string_list(text, max_items=5) == expected


@pytest.mark.parametrize("text", ["no json here", "[1, 2]", '{"a": [], "b": []}', '"just a string"', "[]",
                                  '["' + "x" * 300 + '"]'])
def test_unusable_output_is_a_value_error(text):
    with pytest.raises(ValueError):
        parse_json_string_list(text)
