/* Firmware side of the jointnas simulator protocol: the simavr harness (devices/simavr/harness.c) on
 * AVR, QEMU's mps2-an500 under -icount on Cortex-M (../qemu/jointnas_sim_arm.h, devices/qemu.py).
 *
 * JOINTNAS_SIM_BEGIN() / JOINTNAS_SIM_END() mark a measured region (cycles counted between them),
 * JOINTNAS_SIM_PUT(byte) emits one output byte, JOINTNAS_SIM_EXIT() ends the simulation.
 * On a real AVR board the markers are plain writes to the general-purpose I/O registers: harmless.
 * On Cortex-M the header also defines the vector table and reset handler: include it in one
 * translation unit only (the measuring main).
 */
#ifndef JOINTNAS_SIM_H
#define JOINTNAS_SIM_H

#if defined(__ARM_ARCH_PROFILE) && __ARM_ARCH_PROFILE == 'M'
#include "../qemu/jointnas_sim_arm.h"
#else

#include <avr/interrupt.h>
#include <avr/io.h>
#include <avr/sleep.h>

#define JOINTNAS_SIM_BEGIN() (GPIOR0 = 1)
#define JOINTNAS_SIM_END() (GPIOR0 = 2)
#define JOINTNAS_SIM_PUT(byte) (GPIOR1 = (uint8_t)(byte))
#define JOINTNAS_SIM_EXIT() \
    do {                    \
        cli();              \
        sleep_cpu();        \
    } while (0)

#endif
#endif
