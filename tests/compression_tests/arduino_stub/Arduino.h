/* Just enough of the Arduino core to compile the generated sketches on the host (tests only). */
#ifndef ARDUINO_STUB_H
#define ARDUINO_STUB_H
#include <stdint.h>

#define PROGMEM
#define pgm_read_byte(p) (*(const uint8_t *)(p))
#define F(text) (text)

struct SerialStub {
    void begin(long) {}
    int available() { return 0; }
    int read() { return '\n'; }
    float parseFloat() { return 0.0f; }
    template <class T> void print(T) {}
    template <class T> void println(T) {}
    void println() {}
};
static SerialStub Serial;

#endif
