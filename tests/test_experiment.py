"""The scripts' command line: the use subcommand, texts from the command line, errors as one line."""

import argparse
import io

import pytest

from jaxdl import experiment
from jaxdl.data.text import Vocabulary
from jaxdl.runs import RunError


def test_script_sends_use_to_the_use_function_and_the_rest_to_main():
    calls = []
    use = lambda argv: calls.append(("use", argv)) or "used"

    @experiment.script(use=use)
    def main(argv=None):
        calls.append(("main", argv))
        return "trained"

    assert main(["--epochs", "2"]) == "trained"
    assert main(["use", "some text", "--out", "runs/x"]) == "used"
    assert main(["--seed", "1", "use"]) == "trained"  # only a first word "use" is the subcommand
    assert calls == [("main", ["--epochs", "2"]), ("use", ["some text", "--out", "runs/x"]),
                     ("main", ["--seed", "1", "use"])]


def test_script_turns_a_users_error_into_one_line_and_status_1(capsys):
    @experiment.script(use=lambda argv: experiment.texts_from(argv))
    def main(argv=None):
        raise AssertionError("not reached")

    with pytest.raises(SystemExit) as ended:
        main(["use", "  "])
    assert ended.value.code == "error: no text to use the run on: give one or more, or - to read lines from stdin"

    @experiment.script
    def plain(argv=None):
        raise ValueError("a bug, not a user's error")

    with pytest.raises(ValueError):  # a bug keeps its traceback
        plain([])


def test_texts_from_reads_arguments_and_stdin_lines(monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("first line\n\n  second line  \n"))
    assert experiment.texts_from(["one", "-", " two "]) == ["one", "first line", "second line", "two"]
    with pytest.raises(RunError, match="no text"):
        experiment.texts_from([" ", ""])


def test_use_parser_takes_texts_and_the_run_folder(capsys):
    parser = experiment.use_parser("demo.py", "Use a demo run.", out="runs/demo", texts="a sentence")
    args = parser.parse_args(["a b", "c", "--out", "elsewhere"])
    assert args.texts == ["a b", "c"] and str(args.out) == "elsewhere"
    assert str(parser.parse_args(["x"]).out) == "runs/demo"
    with pytest.raises(SystemExit):
        parser.parse_args([])  # at least one text
    assert "demo.py use" in capsys.readouterr().err


def test_with_pretrained_words_adds_the_files_first_words_in_the_scripts_form(tmp_path, capsys):
    path = tmp_path / "vectors.txt"
    path.write_text("the 1 2\nparis 3 4\nParis 5 6\n1996 7 8\nfrance 9 10\nlyon 1 1\n")
    training = Vocabulary.build([["the", "france"]])
    args = argparse.Namespace(embeddings=path, embed=2, pretrained_words=5)
    extended = experiment.with_pretrained_words(args, training, form=str.lower)
    assert extended.tokens == (*training.tokens, "paris", "1996")  # training's ids kept; "Paris" and "lyon" left out
    assert "4 words from training, 2 more from the first 5 of" in capsys.readouterr().out
    for unchanged in (argparse.Namespace(embeddings=None, embed=2, pretrained_words=5),
                      argparse.Namespace(embeddings=path, embed=2, pretrained_words=0)):
        assert experiment.with_pretrained_words(unchanged, training) is training
