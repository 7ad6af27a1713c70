/* Cortex-M side of the jointnas simulator protocol, for QEMU's mps2-an500 (Cortex-M7) under -icount.
 *
 * Included by ../simavr/jointnas_sim.h on Cortex-M targets, in exactly ONE translation unit (the
 * measuring main): besides the markers it defines the vector table and the reset handler, so the
 * program needs no startup file and no linker script: the toolchain's default script, with the
 * profile's -Wl,--section-start=.jn_vectors=0x0 (the table at address 0, where the M7 reads it at
 * reset) and -Wl,--undefined=jn_sim_vectors (kept by --gc-sections).
 *
 * What is counted: QEMU with -icount shift=S advances its virtual clock 2^S ns per executed
 * instruction; the CMSDK APB timer 0 (0x40000000, a 32-bit down counter at 25 MHz) reads that clock,
 * so the ticks between two reads are instructions * 2^S / 40 (devices/qemu.py converts them back).
 * That counter wraps every 2^32 ticks; the dual timer 1 (0x40002000, the same clock / 256) is read with
 * it and tells how many times it wrapped.
 * These are instructions executed, not Cortex-M7 cycles (no pipeline, dual issue or wait states).
 *
 * Records go to the host file "jointnas-regions.bin" (semihosting SYS_OPEN/SYS_WRITE, relative to
 * QEMU's working directory), output bytes to "jointnas-output.bin": each record is 4 little-endian
 * uint32 words {kind, a, b, c}: kind 1 = region (a = ticks mod 2^32, b = coarse ticks), kind 2 =
 * exit (a, b: the same since the timers started; c = stack peak bytes), kind 3 = fault (a = the
 * exception number).
 *
 * JOINTNAS_SIM_BEGIN() / JOINTNAS_SIM_END() mark a region, JOINTNAS_SIM_PUT(byte) emits one output
 * byte, JOINTNAS_SIM_EXIT() ends the run. JOINTNAS_SIM_SPLIT() ends the current region and starts the
 * next; it is an expression usable from any translation unit (a call through the reserved vector
 * slot 7 of the vector table
 * (VTOR at 0xE000ED08 holds the table's address), for the generated library's per-layer hook:
 *     JN_TRACE(layer,data,type,count) =
 *         ((*(void (*const *)(void))(*(volatile unsigned *)0xE000ED08U + 0x1CU))())
 */
#ifndef JOINTNAS_SIM_ARM_H
#define JOINTNAS_SIM_ARM_H

#include <stdint.h>

#define JN_SIM_TIMER_VALUE (*(volatile uint32_t *)0x40000004U)
#define JN_SIM_TIMER_RELOAD (*(volatile uint32_t *)0x40000008U)
#define JN_SIM_TIMER_CTRL (*(volatile uint32_t *)0x40000000U)
#define JN_SIM_COARSE_LOAD (*(volatile uint32_t *)0x40002000U) /* dual timer 1: 25 MHz / 256 */
#define JN_SIM_COARSE_VALUE (*(volatile uint32_t *)0x40002004U)
#define JN_SIM_COARSE_CTRL (*(volatile uint32_t *)0x40002008U)
#define JN_SIM_CPACR (*(volatile uint32_t *)0xE000ED88U)
#define JN_SIM_STACK_TOP 0x20400000U    /* end of the 4 MB SSRAM2&3 at 0x20000000 */
#define JN_SIM_STACK_BOTTOM 0x20000000U /* the stack may use all of it; painted at reset */
#define JN_SIM_PAINT 0x4A4E5354U        /* "JNST" */

#define JOINTNAS_SIM_SPLIT() ((*(void (*const *)(void))(*(volatile unsigned *)0xE000ED08U + 0x1CU))())

/* Another translation unit that wants the macros above without the definitions below (the vector
 * table, the reset handler) defines JOINTNAS_SIM_DECLARE_ONLY before including the header. */
#ifndef JOINTNAS_SIM_DECLARE_ONLY

static int jn_sim_regions_fd = -1, jn_sim_output_fd = -1;
static uint32_t jn_sim_begin_fine, jn_sim_begin_coarse;

static inline int jn_sim_semihost(int op, void *arg)
{
    register int r0 __asm__("r0") = op;
    register void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

static inline int jn_sim_open(const char *name, int len)
{
    uint32_t args[3] = {(uint32_t)name, 5 /* "wb" */, (uint32_t)len};
    return jn_sim_semihost(0x01, args);
}

static inline void jn_sim_write(int fd, const void *data, uint32_t len)
{
    uint32_t args[3] = {(uint32_t)fd, (uint32_t)data, len};
    jn_sim_semihost(0x05, args);
}

static inline void jn_sim_record(uint32_t kind, uint32_t a, uint32_t b, uint32_t c)
{
    uint32_t rec[4] = {kind, a, b, c};
    jn_sim_write(jn_sim_regions_fd, rec, sizeof rec);
}

__attribute__((noreturn)) static inline void jn_sim_stop(uint32_t reason)
{
    register int r0 __asm__("r0") = 0x18; /* SYS_EXIT */
    register uint32_t r1 __asm__("r1") = reason;
    __asm__ volatile("bkpt 0xab" : : "r"(r0), "r"(r1) : "memory");
    for (;;) {
    }
}

static inline void jointnas_sim_begin(void)
{
    jn_sim_begin_coarse = JN_SIM_COARSE_VALUE;
    jn_sim_begin_fine = JN_SIM_TIMER_VALUE;
}

static inline void jointnas_sim_end(void)
{
    uint32_t fine = JN_SIM_TIMER_VALUE, coarse = JN_SIM_COARSE_VALUE;
    jn_sim_record(1, jn_sim_begin_fine - fine, jn_sim_begin_coarse - coarse, 0);
    jointnas_sim_begin(); /* the record's own instructions stay out of the next split */
}

static inline void jointnas_sim_put(uint8_t byte) { jn_sim_write(jn_sim_output_fd, &byte, 1); }

static inline void jointnas_sim_exit(void)
{
    uint32_t fine = JN_SIM_TIMER_VALUE, coarse = JN_SIM_COARSE_VALUE;
    const uint32_t *p = (const uint32_t *)JN_SIM_STACK_BOTTOM;
    while ((uint32_t)p < JN_SIM_STACK_TOP && *p == JN_SIM_PAINT) p++;
    jn_sim_record(2, 0xFFFFFFFFU - fine, 0xFFFFFFFFU - coarse, JN_SIM_STACK_TOP - (uint32_t)p);
    jn_sim_stop(0x20026); /* ADP_Stopped_ApplicationExit: QEMU exits 0 */
}

#define JOINTNAS_SIM_BEGIN() jointnas_sim_begin()
#define JOINTNAS_SIM_END() jointnas_sim_end()
#define JOINTNAS_SIM_PUT(byte) jointnas_sim_put((uint8_t)(byte))
#define JOINTNAS_SIM_EXIT() jointnas_sim_exit()

int main(void);
extern uint32_t __bss_start__[], __bss_end__[];

void jointnas_sim_split(void) { jointnas_sim_end(); }

static inline void jn_sim_fault(void)
{
    uint32_t ipsr;
    __asm__ volatile("mrs %0, ipsr" : "=r"(ipsr));
    jn_sim_record(3, ipsr & 0x1FFU, 0, 0);
    jn_sim_stop(0x20023); /* ADP_Stopped_RunTimeErrorUnknown: QEMU exits 1 */
}

__attribute__((noreturn, used)) void jn_sim_start(void)
{
    for (uint32_t *p = __bss_start__; p < __bss_end__; p++) *p = 0;
    JN_SIM_CPACR |= 0xFU << 20; /* CP10/CP11 full access: the hard-float ABI uses the FPU */
    __asm__ volatile("dsb\n\tisb" ::: "memory");
    jn_sim_regions_fd = jn_sim_open("jointnas-regions.bin", 20);
    jn_sim_output_fd = jn_sim_open("jointnas-output.bin", 19);
    JN_SIM_TIMER_RELOAD = 0xFFFFFFFFU;
    JN_SIM_TIMER_VALUE = 0xFFFFFFFFU;
    JN_SIM_COARSE_LOAD = 0xFFFFFFFFU;
    JN_SIM_TIMER_CTRL = 1U;
    JN_SIM_COARSE_CTRL = 0x8AU; /* enabled, free-running, prescale 256, 32-bit */
    main();
    jointnas_sim_exit();
    for (;;) {
    }
}

/* Paints the whole stack area (the stack pointer starts at its top, nothing is pushed yet) for the peak
 * read at exit, then runs the C start: naked, so it uses no stack itself. */
__attribute__((naked, used)) void jn_sim_reset(void)
{
    __asm__ volatile(
        "ldr r0, =0x20000000\n\t" /* JN_SIM_STACK_BOTTOM */
        "ldr r1, =0x20400000\n\t" /* JN_SIM_STACK_TOP */
        "ldr r2, =0x4A4E5354\n\t" /* JN_SIM_PAINT */
        "1: cmp r0, r1\n\t"
        "bhs 2f\n\t"
        "str r2, [r0], #4\n\t"
        "b 1b\n\t"
        "2: b jn_sim_start\n\t"
        ".ltorg");
}

typedef void (*jn_sim_vector)(void);
__attribute__((section(".jn_vectors"), used)) const jn_sim_vector jn_sim_vectors[16] = {
    (jn_sim_vector)JN_SIM_STACK_TOP,
    jn_sim_reset,
    jn_sim_fault, /* NMI */
    jn_sim_fault, /* HardFault */
    jn_sim_fault, /* MemManage */
    jn_sim_fault, /* BusFault */
    jn_sim_fault, /* UsageFault */
    jointnas_sim_split, /* reserved slot 7: JOINTNAS_SIM_SPLIT() calls through it */
    jn_sim_fault,
    jn_sim_fault,
    jn_sim_fault,
    jn_sim_fault, /* SVCall */
    jn_sim_fault,
    jn_sim_fault,
    jn_sim_fault, /* PendSV */
    jn_sim_fault, /* SysTick */
};

#endif /* JOINTNAS_SIM_DECLARE_ONLY */
#endif
