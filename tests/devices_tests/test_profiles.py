from __future__ import annotations

import pytest

from jointnas.devices import DeviceConfig, load_profile, profile_names
from jointnas.search.config import load_config, parse_config
from jointnas.spaces import UserInputError


def test_packaged_profiles_carry_the_board_figures():
    assert profile_names() == ["arduino-uno", "esp32", "ort-cpu", "ort-cpu-nchwc", "rpi4", "stm32f746"]
    uno = load_profile("arduino-uno")
    assert (uno.flash_bytes, uno.sram_bytes, uno.clock_mhz, uno.fpu, uno.native_bits) == (32768, 2048, 16, False, (8,))
    stm = load_profile("stm32f746")
    assert (stm.cpu, stm.flash_bytes, stm.sram_bytes, stm.clock_mhz) == ("Cortex-M7", 1024 * 1024, 320 * 1024, 216)
    esp = load_profile("esp32")
    assert (esp.flash_bytes, esp.sram_bytes, esp.clock_mhz) == (4 * 1024 * 1024, 520 * 1024, 240)
    assert load_profile("ort-cpu").latency == "ort" and load_profile("rpi4").latency == "imported"
    assert load_profile("rpi4").machine == "aarch64"
    # Soft-float MACs cost an AVR far more than int8 ones; sub-byte bit-widths pay for unpacking.
    assert uno.mac_cycles(8, 8) < uno.mac_cycles(2, 8) < uno.mac_cycles(32, 32) / 10
    assert uno.mac_cycles(8, 32) == uno.mac_cycles(32, 32)  # float input: float kernel


def test_user_profile_by_path_and_errors(tmp_path):
    path = tmp_path / "board.toml"
    path.write_text(
        'name = "my-board"\nlatency = "cycles"\nclock_mhz = 64\nflash_bytes = 65536\nsram_bytes = 8192\n'
        '[cycles_per_mac]\n"8" = 2.0\n"32" = 40.0\n'
    )
    p = load_profile(str(path))
    assert (p.name, p.clock_mhz, p.mac_cycles(4, 8), p.mac_cycles(16, 8)) == ("my-board", 64, 2.0, 40.0)
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\nlatency = "cycles"\n[cycles_per_mac]\n"8" = 1.0\n')
    with pytest.raises(UserInputError, match="needs clock_mhz"):
        load_profile(str(bad))
    with pytest.raises(UserInputError, match=r"unknown device 'nano'; choose one of \['arduino-uno'"):
        load_profile("nano")
    with pytest.raises(UserInputError, match="cannot be read"):
        load_profile(str(tmp_path / "missing.toml"))


def test_device_config_accepts_profiles_and_keeps_the_hash_of_old_configs():
    assert DeviceConfig(name="arduino-uno").name == "arduino-uno"
    assert DeviceConfig(name="boards/x.toml").name == "boards/x.toml"
    with pytest.raises(UserInputError, match=r"device.name: unknown device 'uno'"):
        parse_config({"device": {"name": "uno"}})
    cfg = load_config("studies/quickstart.toml")
    canonical = cfg.canonical()
    # New optional keys are left out of the canonical config, so existing studies keep their hash.
    assert set(canonical["device"]) == {"name", "threads", "lut", "warmup", "repeats"}
    assert set(canonical["constraints"]) == {"flash_bytes", "sram_bytes", "latency_ms"}
    fits = parse_config({"constraints": {"fits": ["arduino-uno"]}})
    assert fits.canonical()["constraints"]["fits"] == ["arduino-uno"]
    assert fits.config_hash() != parse_config({}).config_hash()
    with pytest.raises(UserInputError, match="constraints.fits: .*unknown device 'uno'"):
        parse_config({"constraints": {"fits": ["uno"]}})
