/* A minimal point-of-sale program on floorbell's C ABI: open the engine of
 * a data directory, publish a waiter call for a table, print what a polling
 * client would get, then track an order for that table (start it, page the
 * guest when the food is ready, clear it when served), close.
 *
 *     cc example_pos.c -I include -L target/debug -lfloorbell -o example_pos
 *     ./example_pos /var/lib/pos/floorbell [TABLE]
 *
 * Every floorbell call returns a status; on failure the thread's last error
 * says why. Strings floorbell hands out are freed with floorbell_string_free. */
#include <stdio.h>
#include <stdlib.h>

#include "floorbell.h"

/* Prints the last error of this thread after a failed call. */
static int fail(const char *what, floorbell_status status) {
    char why[512];
    floorbell_last_error_message(why, sizeof why);
    fprintf(stderr, "example_pos: %s failed (status %d): %s\n", what, (int)status, why);
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s DATA_DIR [TABLE]\n", argv[0]);
        return 2;
    }
    int table = argc > 2 ? atoi(argv[2]) : 3;

    floorbell_engine *engine = NULL;
    floorbell_status s = floorbell_engine_open(argv[1], NULL, &engine);
    if (s != FLOORBELL_STATUS_OK) return fail("floorbell_engine_open", s);

    char event[64];
    snprintf(event, sizeof event, "{\"code\":\"waiter_call\",\"table\":%d}", table);
    char hash[11]; /* "0x" + 8 hex digits + NUL */
    s = floorbell_engine_publish_event(engine, event, hash);
    if (s != FLOORBELL_STATUS_OK) {
        floorbell_engine_close(engine);
        return fail("floorbell_engine_publish_event", s);
    }
    fprintf(stderr, "published waiter call for table %d: %s\n", table, hash);

    char *json = NULL;
    s = floorbell_engine_events_since(engine, "none", &json, NULL);
    if (s != FLOORBELL_STATUS_OK) {
        floorbell_engine_close(engine);
        return fail("floorbell_engine_events_since", s);
    }
    printf("%s\n", json);
    floorbell_string_free(json);

    /* An order (SPEC §3.3): tracker 7 on this table. Each call returns after
     * the change is on disk; the answers are the HTTP API's bodies. */
    char order_json[96];
    snprintf(order_json, sizeof order_json, "{\"name\":\"7\",\"orderType\":\"ON_PREMISE\",\"locationName\":\"%d\"}",
             table);
    char *order = NULL;
    s = floorbell_engine_order_start(engine, order_json, &order);
    if (s != FLOORBELL_STATUS_OK) {
        floorbell_engine_close(engine);
        return fail("floorbell_engine_order_start", s);
    }
    fprintf(stderr, "started %s\n", order);
    floorbell_string_free(order);
    s = floorbell_engine_order_page(engine, "7", true, NULL);
    if (s == FLOORBELL_STATUS_OK) s = floorbell_engine_order_clear(engine, "7", NULL);
    if (s != FLOORBELL_STATUS_OK) {
        floorbell_engine_close(engine);
        return fail("floorbell_engine_order_page / _clear", s);
    }
    fprintf(stderr, "paged and cleared order 7\n");

    s = floorbell_engine_close(engine);
    if (s != FLOORBELL_STATUS_OK) return fail("floorbell_engine_close", s);
    return 0;
}
