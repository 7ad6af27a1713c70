/* Prototype of the test drivers' JN_TRACE hook (passed with -include). */
void jn_test_trace(int layer, const void *data, int type, unsigned count);
