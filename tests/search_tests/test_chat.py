"""`jointnas chat`: replies through the C library equal those through ONNX Runtime and torch; bad folders exit 2."""

from __future__ import annotations

import shutil

import pytest
import torch

from jointnas.compression import deployable_model, export_onnx
from jointnas.objectives import tinychat
from jointnas.search.cli import main
from jointnas.search.tools.chat import open_chat

from ..compression_tests.test_cgen_tinychat import _chat, _library

QUERIES = ["hello", "how are you?", "what is your name"]
needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not installed (apt-get install gcc)")


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    """A folder laid out as `jointnas export` writes it for a tinychat trial: c/ and model.onnx."""
    out = tmp_path_factory.mktemp("chat-export")
    task, model = _chat(4)
    _library(4, out / "c")
    export_onnx(model, task.x_test[:1], out / "model.onnx")
    return out, task, model


@needs_gcc
def test_c_and_onnx_replies_equal_greedy_decoding_with_torch(export_dir):
    out, _, model = export_dir
    deploy = deployable_model(model)
    with torch.no_grad():
        expected = [tinychat.greedy_reply(lambda x: deploy(torch.from_numpy(x)).numpy(), q) for q in QUERIES]
    assert any(expected) and all(r == r.upper() for r in expected)
    for onnx in (False, True):
        chat = open_chat(out, onnx=onnx)
        try:
            assert [chat.reply(q) for q in QUERIES] == expected
        finally:
            chat.close()


@needs_gcc
def test_cli_answers_each_query_on_its_own_line(export_dir, capsys):
    out, _, _ = export_dir
    assert main(["chat", str(out), "--query", "hello", "--query", "hi"]) == 0
    lines = capsys.readouterr().out.splitlines()
    chat = open_chat(out)
    try:
        assert lines == [chat.reply("hello"), chat.reply("hi")]
    finally:
        chat.close()


def test_a_folder_without_a_text_model_is_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "c").mkdir()
    assert main(["chat", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "no exported text model" in err and "\n" not in err
    assert main(["chat", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
