"""tinychat in C: the trigram encoder equals the Python one bit for bit, jointnas_reply equals greedy decoding
with the torch model, and the library builds for the Arduino Uno (avr-gcc) and a Cortex-M7."""

from __future__ import annotations

import functools
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from jointnas.compression import CLibrary, PipelineConfig, generate_c_library, run_pipeline
from jointnas.compression.cgen import Options
from jointnas.objectives import TaskConfig, load_task, tinychat
from jointnas.objectives.tinychat import encode_context, encode_query, normalize_text
from jointnas.spaces import Candidate, Stage, build_model

from .cgen_build import STRICT, build, compile_c, needs_gcc

SAMPLE = Path(__file__).parents[2] / "studies" / "data" / "tinychat_sample.txt"
HERE = Path(__file__).parent
UNO_FLASH = 32_256  # 32 KB less the 0.5 KB bootloader
UNO_RAM = 1_536  # of 2 KB: the rest is the stack's


@functools.cache
def _chat(bits: int, hidden: int = 48):
    task = load_task(TaskConfig(dataset="tinychat", path=str(SAMPLE), val_fraction=0.1, test_fraction=0.1))
    act = 8 if bits < 32 else 32
    c = Candidate("mlp", task.input_shape, task.num_classes, (Stage(hidden, weight_bits=bits, act_bits=act),))
    c = Candidate(c.family, c.input_shape, c.num_classes, c.stages, head_bits=8 if bits < 32 else 32)
    steps = ["quantize", "finetune"] if bits < 32 else []
    config = PipelineConfig(train_epochs=30, finetune_epochs=10, steps=steps, lr=5e-3, batch_size=64)
    torch.manual_seed(0)
    result = run_pipeline(c, task.x_train, task.y_train, task.x_val, task.y_val, config, seed=0)
    return task, result.model


def _library(bits: int, directory: Path, hidden: int = 48) -> CLibrary:
    task, model = _chat(bits, hidden)
    return generate_c_library(
        model,
        task.input_shape,
        directory,
        normalization=task.normalization,
        calibration=task.x_train[:512],
        encoder=task.encoder,
        name="chat",
    )


@torch.no_grad()
def greedy_reply(model: torch.nn.Module, query: str, max_chars: int) -> str:
    """Greedy decoding with the torch model (`tinychat.greedy_reply`), as jointnas_reply does it."""
    with torch.no_grad():
        return tinychat.greedy_reply(lambda x: model(torch.from_numpy(x)).numpy(), query, max_chars)


QUERIES = ["hello", "hi", "how are you?", "what is your name", "  HEY!!  There, you  ", "tell me a joke", "xyzzy"]


@needs_gcc
@pytest.mark.parametrize("bits", [8, 4, 32])
def test_reply_equals_greedy_decoding_with_the_torch_model(bits, tmp_path):
    lib = _library(bits, tmp_path / "c")
    assert lib.has_reply and "int jointnas_reply(" in lib.header.read_text()
    exe = build(lib, tmp_path / "reply", [HERE / "cgen_reply_driver.c"])
    max_len = 40
    out = subprocess.run([str(exe), str(max_len), *QUERIES], capture_output=True, text=True, check=True).stdout
    _, model = _chat(bits)
    replies = [line.split("|", 1) for line in out.splitlines()]
    want = [greedy_reply(model, q, max_len - 1) for q in QUERIES]
    assert [r for _, r in replies] == want
    assert [int(n) for n, _ in replies] == [len(w) for w in want]
    assert any(len(w) > 3 for w in want)  # the model says something


@needs_gcc
def test_c_encoder_equals_the_python_encoder(tmp_path):
    lib = _library(8, tmp_path / "c")
    exe = tmp_path / "encoder"
    sources = [lib.directory / "jointnas_chat.c", HERE / "cgen_encoder_stub.c"]
    compile_c(["gcc", *STRICT, "-I", str(lib.directory), *map(str, sources), "-o", str(exe)])
    cases = [
        ("hello there. how are you?", "  Hi!!  How ARE you??  "),
        ("ok", ""),
        ("a", "Ünïcode & punctuation: 42, ok?"),
        ("aaaa aaaa aaaa aaaa", "aaa " * 40),
    ]
    for script, query in cases:
        out = subprocess.run([str(exe), script, query], capture_output=True, text=True, check=True).stdout
        got = np.array([[int(v, 16) for v in line.split()] for line in out.splitlines()], dtype=np.uint32)
        q = encode_query(normalize_text(query))
        want = np.stack([np.concatenate([q, encode_context(script[:i])]) for i in range(len(script) + 1)])
        np.testing.assert_array_equal(got, want.astype(np.float32).view(np.uint32))


AVR_MAIN = """
#include "jointnas_model.h"
volatile char sink;
int main(void)
{
    static char reply[32];
    int n = jointnas_reply("hello", reply, (int)sizeof reply);
    sink = reply[0];
    return n;
}
"""


def _sizes(tool: str, elf: Path) -> dict[str, int]:
    """Berkeley sizes (text includes read-only data; on AVR that is where PROGMEM goes)."""
    out = subprocess.run([tool, str(elf)], capture_output=True, text=True, check=True).stdout
    text, data, bss = (int(v) for v in out.splitlines()[1].split()[:3])
    return {"text": text, "data": data, "bss": bss}


@pytest.mark.skipif(shutil.which("avr-gcc") is None, reason="avr-gcc is not installed")
def test_avr_build_fits_the_arduino_uno(tmp_path):
    lib = _library(4, tmp_path / "c", hidden=32)
    main = tmp_path / "main.c"
    main.write_text(AVR_MAIN)
    elf = tmp_path / "chat.elf"
    flags = ["-mmcu=atmega328p", "-Os", *STRICT, "-I", str(lib.directory)]
    compile_c(["avr-gcc", *flags, *map(str, lib.sources), str(main), "-o", str(elf)])
    sizes = _sizes("avr-size", elf)
    assert sizes["text"] + sizes["data"] <= UNO_FLASH, sizes
    assert sizes["data"] + sizes["bss"] <= UNO_RAM, sizes
    assert sizes["text"] >= lib.weight_bytes  # the weights are in program memory, not in .data
    assert sizes["data"] < 64  # descriptors and weights stay in Flash (PROGMEM)


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="arm-none-eabi-gcc is not installed")
def test_cortex_m7_build_is_warning_free(tmp_path):
    lib = _library(8, tmp_path / "c")
    main = tmp_path / "main.c"
    main.write_text(AVR_MAIN)
    elf = tmp_path / "chat.elf"
    flags = ["-mcpu=cortex-m7", "-mthumb", "-Os", *STRICT, "-I", str(lib.directory), "--specs=nosys.specs"]
    compile_c(["arm-none-eabi-gcc", *flags, *map(str, lib.sources), str(main), "-o", str(elf)])
    sizes = _sizes("arm-none-eabi-size", elf)
    assert sizes["text"] >= lib.weight_bytes and sizes["bss"] >= lib.arena_bytes


@pytest.mark.skipif(shutil.which("g++") is None, reason="no host g++")
@pytest.mark.parametrize("chat", [True, False])
def test_arduino_sketch_compiles_against_the_core_api(chat, tmp_path):
    if chat:
        lib = _library(8, tmp_path / "c")
    else:
        c = Candidate("mlp", (16,), 3, (Stage(8),))
        lib = generate_c_library(build_model(c), c.input_shape, tmp_path / "c", class_labels=["a", "b|c", 'q"'])
    assert lib.sketch == lib.directory / "arduino" / lib.sketch.stem / f"{lib.sketch.stem}.ino"
    flags = ["-std=c++11", "-Wall", "-Wextra", "-Werror", "-x", "c++", "-c", "-o", str(tmp_path / "sketch.o")]
    compile_c(["g++", *flags, "-I", str(HERE / "arduino_stub"), "-I", str(lib.directory), str(lib.sketch)])
    assert ("jointnas_reply" in lib.sketch.read_text()) == chat


@needs_gcc
@pytest.mark.parametrize("input_bits", [8, 16])
def test_encoder_writes_the_quantized_input_in_place(input_bits, tmp_path):
    # The query counters live in the input tensor's own bytes until converted (ascending for 1-byte
    # elements, descending for wider ones): every step's input must be the Python features on the grid.
    task, model = _chat(8)
    lib = generate_c_library(
        model, task.input_shape, tmp_path / "c", calibration=task.x_train[:512], encoder=task.encoder,
        options=Options(input_bits=input_bits),
    )  # fmt: skip
    assert lib.input_type == ("uint8_t" if input_bits == 8 else "uint16_t")
    trace = HERE / "cgen_input_trace.c"
    flags = ("-O2", "-DJN_TRACE(l,d,t,n)=jn_test_trace(l,d,t,n)", "-include", str(HERE / "cgen_trace.h"))
    exe = build(lib, tmp_path / "trace", [trace], flags)
    query = "Hello there!! what is   your name? " * 3
    out = subprocess.run([str(exe), "12", query], capture_output=True, text=True, check=True).stdout.splitlines()
    reply = out[-1].lower()
    codes = np.array([[float(v) for v in line.split()] for line in out[:-1]])
    q = encode_query(normalize_text(query))
    want = np.stack([np.concatenate([q, encode_context(reply[:i])]) for i in range(len(codes))])
    assert len(codes) == len(reply) + (len(reply) < 11) and len(reply) > 0
    np.testing.assert_allclose(codes * lib.input_scale, want, atol=lib.input_scale * 0.5 + 1e-7)
