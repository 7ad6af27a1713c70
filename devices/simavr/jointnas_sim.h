/* Firmware side of the jointnas simavr harness (devices/simavr/harness.c).
 *
 * JOINTNAS_SIM_BEGIN() / JOINTNAS_SIM_END() mark a measured region (cycles counted between them),
 * JOINTNAS_SIM_PUT(byte) emits one output byte, JOINTNAS_SIM_EXIT() ends the simulation.
 * On a real board the markers are plain writes to the general-purpose I/O registers: harmless.
 */
#ifndef JOINTNAS_SIM_H
#define JOINTNAS_SIM_H

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
