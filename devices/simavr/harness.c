/* jointnas simavr harness: run an ATmega firmware to its end, count cycles between markers.
 *
 * Usage: harness FIRMWARE.elf MCU FREQ_HZ MAX_CYCLES
 * Firmware protocol (devices/simavr/jointnas_sim.h): a write of 1 to GPIOR0 starts a measured region,
 * a write of 2 ends it; each write to GPIOR1 emits one output byte. The run ends when the firmware
 * sleeps with interrupts off (simavr's "done" state) or after MAX_CYCLES.
 * Prints one JSON object: region cycles, total cycles, lowest stack pointer, output bytes (hex).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <simavr/sim_avr.h>
#include <simavr/sim_elf.h>
#include <simavr/sim_io.h>

#define GPIOR0_DATA 0x3E /* I/O 0x1E */
#define GPIOR1_DATA 0x4A /* I/O 0x2A */
#define MAX_REGIONS 4096
#define MAX_OUTPUT 65536

static avr_cycle_count_t region_start;
static int region_open;
static avr_cycle_count_t regions[MAX_REGIONS];
static int n_regions;
static uint8_t output[MAX_OUTPUT];
static int n_output;

static void on_marker(avr_t *avr, avr_io_addr_t addr, uint8_t v, void *param) {
    (void)param;
    avr->data[addr] = v;
    if (v == 1) {
        region_start = avr->cycle;
        region_open = 1;
    } else if (v == 2 && region_open && n_regions < MAX_REGIONS) {
        regions[n_regions++] = avr->cycle - region_start;
        region_open = 0;
    }
}

static void on_output(avr_t *avr, avr_io_addr_t addr, uint8_t v, void *param) {
    (void)param;
    avr->data[addr] = v;
    if (n_output < MAX_OUTPUT) output[n_output++] = v;
}

static uint16_t stack_pointer(const avr_t *avr) {
    return (uint16_t)(avr->data[R_SPL] | (avr->data[R_SPH] << 8));
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s FIRMWARE.elf MCU FREQ_HZ MAX_CYCLES\n", argv[0]);
        return 2;
    }
    elf_firmware_t fw;
    memset(&fw, 0, sizeof fw);
    if (elf_read_firmware(argv[1], &fw) != 0) {
        fprintf(stderr, "cannot read firmware %s\n", argv[1]);
        return 2;
    }
    avr_t *avr = avr_make_mcu_by_name(argv[2]);
    if (!avr) {
        fprintf(stderr, "simavr does not know MCU %s\n", argv[2]);
        return 2;
    }
    avr_init(avr);
    avr->log = 0;
    fw.frequency = (uint32_t)strtoul(argv[3], NULL, 10);
    avr_load_firmware(avr, &fw);
    avr_register_io_write(avr, GPIOR0_DATA, on_marker, NULL);
    avr_register_io_write(avr, GPIOR1_DATA, on_output, NULL);
    avr_cycle_count_t max_cycles = (avr_cycle_count_t)strtoull(argv[4], NULL, 10);
    uint16_t lowest_sp = stack_pointer(avr);
    int state = cpu_Running;
    while (state != cpu_Done && state != cpu_Crashed && avr->cycle < max_cycles) {
        state = avr_run(avr);
        uint16_t sp = stack_pointer(avr);
        if (sp < lowest_sp && sp != 0) lowest_sp = sp;
    }
    const char *end = state == cpu_Done ? "done" : state == cpu_Crashed ? "crashed" : "max_cycles";
    printf("{\"end\": \"%s\", \"total_cycles\": %llu, \"ramend\": %u, \"lowest_sp\": %u, \"regions\": [",
           end, (unsigned long long)avr->cycle, (unsigned)avr->ramend, (unsigned)lowest_sp);
    for (int i = 0; i < n_regions; i++) printf("%s%llu", i ? ", " : "", (unsigned long long)regions[i]);
    printf("], \"output_hex\": \"");
    for (int i = 0; i < n_output; i++) printf("%02x", output[i]);
    printf("\"}\n");
    return 0;
}
