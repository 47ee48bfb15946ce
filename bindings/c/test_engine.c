/* The engine through the C ABI, as a POS program written in C uses it:
 * open on a fresh directory, publish and read back, bad calls (each status,
 * the last error, and that nothing changed), serve in-process and read over
 * a plain socket, a subscriber callback for an event published over HTTP, an
 * order driven through start / modify / page / clear / clear-all with its
 * callbacks and its bad calls, the gateway button, an order started over
 * HTTP, events submitted without waiting, a ticket driven through sessions,
 * unsubscribe, close. Run under valgrind by
 * test.sh: every string floorbell hands out is freed here, so any leak or
 * invalid access fails the run. Every wait has a timeout. */
#define _XOPEN_SOURCE 700
#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "floorbell.h"

#define QR_TOKEN "cq"
#define ADMIN_TOKEN "ca"
#define CONFIG "qr-token = \"" QR_TOKEN "\"\nadmin-token = \"" ADMIN_TOKEN "\"\nno-mdns = true\n"
#define TIMEOUT_SECS 20

static int passed, failed;

/* CHECK records a failure and goes on; REQUIRE stops the program (for a
 * failure later steps cannot survive, like a NULL handle). */
static void check_at(int ok, const char *file, int line, const char *fmt, ...) {
    if (ok) {
        passed++;
        return;
    }
    failed++;
    fprintf(stderr, "FAIL %s:%d: ", file, line);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}
#define CHECK(cond, ...) check_at((cond) != 0, __FILE__, __LINE__, __VA_ARGS__)
#define REQUIRE(cond, ...)                                         \
    do {                                                           \
        int ok_ = (cond) != 0;                                     \
        check_at(ok_, __FILE__, __LINE__, __VA_ARGS__);            \
        if (!ok_) {                                                \
            printf("%d passed, %d failed\n", passed, failed);      \
            exit(1);                                               \
        }                                                          \
    } while (0)
#define CHECK_STATUS(call, want)                                                       \
    do {                                                                               \
        floorbell_status got_ = (call);                                                \
        char why_[512];                                                                \
        last_error(why_, sizeof why_);                                                 \
        CHECK(got_ == (want), "%s: status %d, expected %d (last error: %s)", #call,    \
              (int)got_, (int)(want), why_);                                           \
    } while (0)

/* The calling thread's last error, copied into buf ("" when none). */
static size_t last_error(char *buf, size_t size) {
    size_t n = floorbell_last_error_message(buf, size);
    if (size > 0) buf[n < size ? n : size - 1] = '\0';
    return n;
}

static char *events_since(floorbell_engine *fb, const char *hash) {
    char *json = NULL;
    size_t length = 0;
    floorbell_status s = floorbell_engine_events_since(fb, hash, &json, &length);
    REQUIRE(s == FLOORBELL_STATUS_OK && json != NULL, "events_since(%s): status %d",
            hash ? hash : "NULL", (int)s);
    CHECK(length == strlen(json), "events_since length %zu, strlen %zu", length, strlen(json));
    return json;
}

/* --- subscriber ------------------------------------------------------- */

#define MAX_CHANGES 128

struct changes {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_t main_thread;
    int count;
    int on_main_thread;   /* callbacks that ran on the caller's thread */
    int bad_length;       /* callbacks whose length != strlen(data) */
    floorbell_change kinds[MAX_CHANGES];
    char *texts[MAX_CHANGES];
};

static void on_change(void *user_data, floorbell_change kind, const char *data, size_t length) {
    struct changes *c = user_data;
    pthread_mutex_lock(&c->lock);
    if (pthread_equal(pthread_self(), c->main_thread)) c->on_main_thread++;
    if (data == NULL || strlen(data) != length) c->bad_length++;
    if (c->count < MAX_CHANGES) {
        c->kinds[c->count] = kind;
        c->texts[c->count] = strndup(data ? data : "", length);
        c->count++;
    }
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
}

/* Waits until a change of `kind` whose text contains `needle` arrives;
 * returns its index, or -1 after TIMEOUT_SECS. */
static int wait_for_change(struct changes *c, floorbell_change kind, const char *needle) {
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += TIMEOUT_SECS;
    int found = -1;
    pthread_mutex_lock(&c->lock);
    for (;;) {
        for (int i = 0; i < c->count && found < 0; i++) {
            if (c->kinds[i] == kind && strstr(c->texts[i], needle)) found = i;
        }
        if (found >= 0) break;
        if (pthread_cond_timedwait(&c->cond, &c->lock, &deadline) == ETIMEDOUT) break;
    }
    pthread_mutex_unlock(&c->lock);
    return found;
}

static int change_count(struct changes *c) {
    pthread_mutex_lock(&c->lock);
    int n = c->count;
    pthread_mutex_unlock(&c->lock);
    return n;
}

/* --- HTTP over a plain socket ----------------------------------------- */

/* Sends `request` to 127.0.0.1:port and reads the whole response (the
 * server closes after `Connection: close`; a Content-Length body is also
 * read to its end). Returns a malloc'd string, or NULL on failure. */
static char *http_exchange(uint16_t port, const char *request) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return NULL;
    struct timeval tv = {.tv_sec = TIMEOUT_SECS, .tv_usec = 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        close(fd);
        return NULL;
    }
    size_t len = strlen(request), sent = 0;
    while (sent < len) {
        ssize_t n = send(fd, request + sent, len - sent, MSG_NOSIGNAL);
        if (n <= 0) {
            close(fd);
            return NULL;
        }
        sent += (size_t)n;
    }
    size_t cap = 4096, got = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (got + 1 >= cap) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
        ssize_t n = recv(fd, buf + got, cap - got - 1, 0);
        if (n <= 0) break; /* EOF, or the timeout */
        got += (size_t)n;
        buf[got] = '\0';
        char *end = strstr(buf, "\r\n\r\n");
        const char *cl = end ? strstr(buf, "Content-Length:") : NULL;
        if (!cl) cl = end ? strstr(buf, "content-length:") : NULL;
        if (end && cl && cl < end && got >= (size_t)(end + 4 - buf) + strtoul(cl + 15, NULL, 10)) break;
    }
    buf[got] = '\0';
    close(fd);
    return buf;
}

static const char *http_body(const char *response) {
    const char *end = strstr(response, "\r\n\r\n");
    return end ? end + 4 : "";
}

/* --- temp dir --------------------------------------------------------- */

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* --- the tests ---------------------------------------------------------- */

static void publish_and_read_back(floorbell_engine *fb, char *hash) {
    char *before = events_since(fb, NULL);
    CHECK(strcmp(before, "{\"result\":true,\"data\":{\"updates\":[]}}") == 0, "fresh engine has events: %s",
          before);
    floorbell_string_free(before);

    memset(hash, 'X', 11);
    CHECK_STATUS(floorbell_engine_publish_event(fb, "{\"code\":\"waiter_call\",\"table\":5}", hash),
                 FLOORBELL_STATUS_OK);
    CHECK(hash[10] == '\0' && strlen(hash) == 10 && strncmp(hash, "0x", 2) == 0 &&
              strspn(hash + 2, "0123456789abcdef") == 8,
          "hash %.11s is not 0x + 8 lowercase hex digits", hash);
    CHECK(floorbell_last_error_length() == 0, "a successful call left a last error");

    char want[256];
    snprintf(want, sizeof want,
             "{\"result\":true,\"data\":{\"updates\":[{\"hash\":\"%s\",\"code\":\"waiter_call\",\"table\":5,"
             "\"invoice\":null,\"order\":null,\"table_repr\":null}]}}",
             hash);
    char *all = events_since(fb, "none");
    CHECK(strcmp(all, want) == 0, "events_since(none) = %s\nexpected %s", all, want);
    floorbell_string_free(all);

    char *after = events_since(fb, hash);
    CHECK(strstr(after, "\"updates\":[]") != NULL, "events after the last hash: %s", after);
    floorbell_string_free(after);
}

static void bad_calls_change_nothing(floorbell_engine *fb) {
    char *before = events_since(fb, NULL);
    char hash[11] = "untouched!";
    char why[512];

    /* Bad JSON: INVALID_ARGUMENT, a message, no hash written. */
    CHECK_STATUS(floorbell_engine_publish_event(fb, "{\"code\":", hash), FLOORBELL_STATUS_INVALID_ARGUMENT);
    size_t len = floorbell_last_error_length();
    CHECK(len > 0, "no last error after bad JSON");
    size_t n = last_error(why, sizeof why);
    CHECK(n == len && strlen(why) == len, "last_error_message wrote %zu bytes, length said %zu", n, len);
    CHECK(strstr(why, "JSON") != NULL, "bad-JSON message does not say JSON: %s", why);
    CHECK(strcmp(hash, "untouched!") == 0, "out_hash written on failure: %s", hash);
    /* A short buffer: truncated and still NUL-terminated. */
    char small[5] = "zzzz";
    n = floorbell_last_error_message(small, sizeof small);
    CHECK(n == 4 && small[4] == '\0' && strncmp(small, why, 4) == 0, "truncated copy %zu '%s'", n, small);
    CHECK(floorbell_last_error_message(NULL, 10) == 0, "NULL buffer wrote something");

    /* A bad event code. */
    CHECK_STATUS(floorbell_engine_publish_event(fb, "{\"code\":\"Not A Code\"}", hash),
                 FLOORBELL_STATUS_INVALID_ARGUMENT);

    /* NULL engine, NULL arguments. */
    CHECK_STATUS(floorbell_engine_publish_event(NULL, "{\"code\":\"waiter_call\"}", hash),
                 FLOORBELL_STATUS_NULL_POINTER);
    last_error(why, sizeof why);
    CHECK(strstr(why, "engine") != NULL, "NULL-engine message: %s", why);
    CHECK_STATUS(floorbell_engine_publish_event(fb, NULL, hash), FLOORBELL_STATUS_NULL_POINTER);
    char *json = (char *)"sentinel";
    CHECK_STATUS(floorbell_engine_events_since(NULL, NULL, &json, NULL), FLOORBELL_STATUS_NULL_POINTER);
    CHECK_STATUS(floorbell_engine_events_since(fb, NULL, NULL, NULL), FLOORBELL_STATUS_NULL_POINTER);
    CHECK(strcmp(json, "sentinel") == 0, "out_json written on failure");
    CHECK_STATUS(floorbell_engine_open(NULL, NULL, NULL), FLOORBELL_STATUS_NULL_POINTER);
    CHECK_STATUS(floorbell_engine_close(NULL), FLOORBELL_STATUS_OK);
    floorbell_string_free(NULL);

    /* Bad UTF-8. */
    CHECK_STATUS(floorbell_engine_publish_event(fb, "{\"code\":\"waiter_call\",\"x\":\"\xff\xfe\"}", hash),
                 FLOORBELL_STATUS_INVALID_UTF8);
    last_error(why, sizeof why);
    CHECK(strstr(why, "UTF-8") != NULL, "bad-UTF-8 message: %s", why);

    /* Unknown session, unknown subscription, bad role, bad address. */
    char *reply = (char *)"sentinel";
    CHECK_STATUS(floorbell_session_command(fb, 123456789, "new a@b.c Anna", &reply), FLOORBELL_STATUS_NOT_FOUND);
    last_error(why, sizeof why);
    CHECK(strstr(why, "123456789") != NULL, "unknown-session message: %s", why);
    CHECK(strcmp(reply, "sentinel") == 0, "out_reply written on failure");
    CHECK_STATUS(floorbell_session_close(fb, 123456789), FLOORBELL_STATUS_NOT_FOUND);
    CHECK_STATUS(floorbell_engine_unsubscribe(fb, 987654), FLOORBELL_STATUS_NOT_FOUND);
    uint64_t session = 77;
    CHECK_STATUS(floorbell_session_open(fb, "chef", &session), FLOORBELL_STATUS_INVALID_ARGUMENT);
    CHECK(session == 77, "out_session written on failure");
    CHECK_STATUS(floorbell_engine_serve(fb, "nowhere", NULL), FLOORBELL_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(floorbell_engine_stop_serving(fb), FLOORBELL_STATUS_WRONG_STATE);
    CHECK_STATUS(floorbell_engine_staff_remove(fb, "Nobody"), FLOORBELL_STATUS_NOT_FOUND);
    CHECK_STATUS(floorbell_engine_subscribe(fb, NULL, NULL, NULL), FLOORBELL_STATUS_NULL_POINTER);

    char *after = events_since(fb, NULL);
    CHECK(strcmp(before, after) == 0, "bad calls changed the events:\nbefore %s\nafter  %s", before, after);
    CHECK(floorbell_last_error_length() == 0, "events_since (OK) did not clear the last error");
    floorbell_string_free(before);
    floorbell_string_free(after);
}

static void open_errors(const char *dir) {
    floorbell_engine *other = NULL;
    CHECK_STATUS(floorbell_engine_open(dir, CONFIG, &other), FLOORBELL_STATUS_IN_USE);
    CHECK(other == NULL, "out_engine written on failure");
    char bad_dir[4096];
    snprintf(bad_dir, sizeof bad_dir, "%s/other", dir);
    CHECK_STATUS(floorbell_engine_open(bad_dir, "tables = 0", &other), FLOORBELL_STATUS_INVALID_ARGUMENT);
    CHECK(other == NULL, "out_engine written on failure");
}

static void serve_and_read_over_http(floorbell_engine *fb, const char *hash, uint16_t *port_out) {
    uint16_t port = 0;
    CHECK_STATUS(floorbell_engine_serve(fb, "127.0.0.1:0", &port), FLOORBELL_STATUS_OK);
    REQUIRE(port != 0, "serve wrote no port");
    *port_out = port;
    CHECK_STATUS(floorbell_engine_serve(fb, "127.0.0.1:0", NULL), FLOORBELL_STATUS_WRONG_STATE);

    char *resp = http_exchange(port,
                               "GET /api/v4/events?hash=none HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                               "token: " QR_TOKEN "\r\nConnection: close\r\n\r\n");
    REQUIRE(resp != NULL, "cannot reach 127.0.0.1:%u", port);
    CHECK(strncmp(resp, "HTTP/1.1 200", 12) == 0, "GET events: %s", resp);
    char *direct = events_since(fb, "none");
    CHECK(strcmp(http_body(resp), direct) == 0, "HTTP body %s\ndiffers from events_since %s", http_body(resp),
          direct);
    CHECK(strstr(http_body(resp), hash) != NULL, "hash %s missing over HTTP: %s", hash, resp);
    floorbell_string_free(direct);
    free(resp);

    resp = http_exchange(port,
                         "GET /api/v4/events?hash=none HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         "token: wrong\r\nConnection: close\r\n\r\n");
    REQUIRE(resp != NULL, "cannot reach 127.0.0.1:%u", port);
    CHECK(strncmp(resp, "HTTP/1.1 401", 12) == 0 &&
              strcmp(http_body(resp), "{\"result\":false,\"error\":\"invalid token\"}") == 0,
          "GET with a wrong token: %s", resp);
    free(resp);
}

static void callback_for_http_publish(floorbell_engine *fb, uint16_t port, struct changes *seen,
                                      uint64_t *sub) {
    CHECK_STATUS(floorbell_engine_subscribe(fb, on_change, seen, sub), FLOORBELL_STATUS_OK);
    const char *body = "{\"code\":\"waiter_call\",\"table\":12}";
    char request[512];
    snprintf(request, sizeof request,
             "POST /api/v4/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " ADMIN_TOKEN
             "\r\nContent-Type: application/json\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
             strlen(body), body);
    char *resp = http_exchange(port, request);
    REQUIRE(resp != NULL, "cannot reach 127.0.0.1:%u", port);
    CHECK(strncmp(resp, "HTTP/1.1 201", 12) == 0, "POST events: %s", resp);
    const char *h = strstr(http_body(resp), "\"hash\":\"");
    REQUIRE(h != NULL, "no hash in the POST answer: %s", resp);
    char hash[11];
    memcpy(hash, h + 8, 10);
    hash[10] = '\0';
    free(resp);

    int i = wait_for_change(seen, FLOORBELL_CHANGE_EVENT, hash);
    REQUIRE(i >= 0, "no FLOORBELL_CHANGE_EVENT for %s within %d s", hash, TIMEOUT_SECS);
    pthread_mutex_lock(&seen->lock);
    CHECK(strstr(seen->texts[i], "\"code\":\"waiter_call\",\"table\":12") != NULL, "event text: %s",
          seen->texts[i]);
    CHECK(seen->on_main_thread == 0, "a callback ran on the caller's thread");
    CHECK(seen->bad_length == 0, "a callback's length was not strlen(data)");
    pthread_mutex_unlock(&seen->lock);
}

/* --- orders (SPEC §3.3) ------------------------------------------------ */

static char *orders_active(floorbell_engine *fb) {
    char *json = NULL;
    floorbell_status s = floorbell_engine_orders_active(fb, &json);
    REQUIRE(s == FLOORBELL_STATUS_OK && json != NULL, "orders_active: status %d", (int)s);
    return json;
}

/* Copies the 36-character uuid out of an order answer. */
static int uuid_of(const char *answer, char uuid[37]) {
    const char *u = strstr(answer, "\"uuid\":\"");
    if (!u || strlen(u + 8) < 36) return 0;
    memcpy(uuid, u + 8, 36);
    uuid[36] = '\0';
    return 1;
}

/* How many changes of `kind` whose text contains `needle` were heard. */
static int count_changes(struct changes *c, floorbell_change kind, const char *needle) {
    int n = 0;
    pthread_mutex_lock(&c->lock);
    for (int i = 0; i < c->count; i++) {
        if (c->kinds[i] == kind && strstr(c->texts[i], needle)) n++;
    }
    pthread_mutex_unlock(&c->lock);
    return n;
}

static void orders_through_the_abi(floorbell_engine *fb, struct changes *seen) {
    char *empty = orders_active(fb);
    CHECK(strcmp(empty, "{\"status\":200,\"count\":0,\"items\":[]}") == 0, "fresh orders: %s", empty);
    floorbell_string_free(empty);

    /* Start: the answer of POST /api/v2/activeorders. */
    char *order = NULL;
    CHECK_STATUS(floorbell_engine_order_start(fb, "{\"name\":\"66\",\"orderType\":\"TO_GO\"}", &order),
                 FLOORBELL_STATUS_OK);
    REQUIRE(order != NULL, "order_start gave no answer");
    CHECK(strncmp(order, "{\"status\":201,\"activeorder\":{\"elapsedTime\":", 43) == 0 &&
              strstr(order, "\"orderType\":\"TO_GO\",\"locationName\":\"\",\"state\":\"started\"") != NULL,
          "order_start answered %s", order);
    char uuid[37];
    REQUIRE(uuid_of(order, uuid), "no uuid in %s", order);
    floorbell_string_free(order);

    /* Modify by uuid: on a table, so located. */
    order = NULL;
    CHECK_STATUS(floorbell_engine_order_modify(fb, uuid, "{\"locationName\":\"22\"}", &order), FLOORBELL_STATUS_OK);
    REQUIRE(order != NULL, "order_modify gave no answer");
    CHECK(strncmp(order, "{\"status\":200,\"activeorder\":", 28) == 0 &&
              strstr(order, "\"locationName\":\"22\",\"state\":\"located\"") != NULL,
          "order_modify answered %s", order);
    floorbell_string_free(order);
    /* Page by name (NULL out: the answer is not wanted), twice: each is a change. */
    CHECK_STATUS(floorbell_engine_order_page(fb, "66", true, NULL), FLOORBELL_STATUS_OK);
    CHECK_STATUS(floorbell_engine_order_page(fb, "66", false, NULL), FLOORBELL_STATUS_OK);

    char *listed = orders_active(fb);
    CHECK(strstr(listed, "\"count\":1,") != NULL && strstr(listed, uuid) != NULL, "active orders: %s", listed);

    /* Bad calls: a status, a message, no output, nothing changed. */
    char why[512];
    char *untouched = (char *)"sentinel";
    CHECK_STATUS(floorbell_engine_order_start(fb, "{\"name\":\"66\",\"orderType\":\"TO_GO\"}", &untouched),
                 FLOORBELL_STATUS_CONFLICT);
    last_error(why, sizeof why);
    CHECK(strstr(why, "66") != NULL, "conflict message: %s", why);
    CHECK_STATUS(floorbell_engine_order_start(fb, "{\"name\":", &untouched), FLOORBELL_STATUS_INVALID_ARGUMENT);
    last_error(why, sizeof why);
    CHECK(strstr(why, "JSON") != NULL, "bad-JSON message: %s", why);
    CHECK_STATUS(floorbell_engine_order_start(fb, "{\"name\":\"1234567\",\"orderType\":\"TO_GO\"}", &untouched),
                 FLOORBELL_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(floorbell_engine_order_start(fb, "{\"name\":\"67\"}", &untouched), FLOORBELL_STATUS_INVALID_ARGUMENT);
    last_error(why, sizeof why);
    CHECK(strstr(why, "orderType") != NULL, "missing-field message: %s", why);
    CHECK_STATUS(floorbell_engine_order_modify(fb, "66", "{\"orderType\":\"TAKEAWAY\"}", &untouched),
                 FLOORBELL_STATUS_INVALID_ARGUMENT);
    const char *unknown = "3f2c1b0a-9d8e-4f7a-8b6c-5d4e3f2a1b0c";
    CHECK_STATUS(floorbell_engine_order_modify(fb, unknown, "{\"locationName\":\"1\"}", &untouched),
                 FLOORBELL_STATUS_NOT_FOUND);
    last_error(why, sizeof why);
    CHECK(strlen(why) > 0, "no message for an unknown uuid");
    CHECK_STATUS(floorbell_engine_order_page(fb, unknown, true, &untouched), FLOORBELL_STATUS_NOT_FOUND);
    CHECK_STATUS(floorbell_engine_order_clear(fb, unknown, &untouched), FLOORBELL_STATUS_NOT_FOUND);
    CHECK_STATUS(floorbell_engine_order_clear(fb, "999", &untouched), FLOORBELL_STATUS_NOT_FOUND);
    CHECK_STATUS(floorbell_engine_order_start(NULL, "{\"name\":\"68\",\"orderType\":\"TO_GO\"}", &untouched),
                 FLOORBELL_STATUS_NULL_POINTER);
    CHECK_STATUS(floorbell_engine_order_start(fb, NULL, &untouched), FLOORBELL_STATUS_NULL_POINTER);
    CHECK_STATUS(floorbell_engine_order_modify(fb, NULL, "{}", &untouched), FLOORBELL_STATUS_NULL_POINTER);
    CHECK_STATUS(floorbell_engine_order_page(NULL, "66", true, &untouched), FLOORBELL_STATUS_NULL_POINTER);
    CHECK_STATUS(floorbell_engine_orders_active(fb, NULL), FLOORBELL_STATUS_NULL_POINTER);
    CHECK_STATUS(floorbell_engine_orders_clear_all(NULL, NULL), FLOORBELL_STATUS_NULL_POINTER);
    CHECK_STATUS(floorbell_engine_press_button(NULL), FLOORBELL_STATUS_NULL_POINTER);
    CHECK_STATUS(floorbell_engine_order_clear(fb, "6\xff", &untouched), FLOORBELL_STATUS_INVALID_UTF8);
    CHECK_STATUS(floorbell_engine_order_start(fb, "{\"name\":\"68\",\"orderType\":\"TO_GO\",\"locationName\":\"\xfe\"}",
                                              &untouched),
                 FLOORBELL_STATUS_INVALID_UTF8);
    last_error(why, sizeof why);
    CHECK(strstr(why, "UTF-8") != NULL, "bad-UTF-8 message: %s", why);
    CHECK(strcmp(untouched, "sentinel") == 0, "out_order written on failure");
    char *after = orders_active(fb);
    /* elapsedTime may tick between the two reads: compare without it. */
    CHECK(strlen(after) == strlen(listed) && strstr(after, uuid) != NULL && strstr(after, "\"name\":\"66\"") != NULL &&
              strstr(after, "\"count\":1,") != NULL,
          "bad calls changed the orders:\nbefore %s\nafter  %s", listed, after);
    floorbell_string_free(listed);
    floorbell_string_free(after);

    /* Clear by uuid: the order is history, its name free again. */
    order = NULL;
    CHECK_STATUS(floorbell_engine_order_clear(fb, uuid, &order), FLOORBELL_STATUS_OK);
    REQUIRE(order != NULL, "order_clear gave no answer");
    CHECK(strstr(order, "\"state\":\"cleared\"") != NULL, "order_clear answered %s", order);
    floorbell_string_free(order);
    CHECK_STATUS(floorbell_engine_order_page(fb, "66", true, NULL), FLOORBELL_STATUS_NOT_FOUND);
    CHECK_STATUS(floorbell_engine_order_modify(fb, uuid, "{\"locationName\":\"5\"}", NULL), FLOORBELL_STATUS_CONFLICT);

    /* Clear-all counts what it cleared. */
    CHECK_STATUS(floorbell_engine_order_start(fb, "{\"name\":\"71\",\"orderType\":\"ON_PREMISE\",\"locationName\":\"3\"}",
                                              NULL),
                 FLOORBELL_STATUS_OK);
    CHECK_STATUS(floorbell_engine_order_start(fb, "{\"name\":\"72\",\"orderType\":\"ON_PREMISE\"}", NULL),
                 FLOORBELL_STATUS_OK);
    size_t cleared = 99;
    CHECK_STATUS(floorbell_engine_orders_clear_all(fb, &cleared), FLOORBELL_STATUS_OK);
    CHECK(cleared == 2, "clear_all cleared %zu, expected 2", cleared);
    CHECK_STATUS(floorbell_engine_orders_clear_all(fb, &cleared), FLOORBELL_STATUS_OK);
    CHECK(cleared == 0, "clear_all of nothing cleared %zu", cleared);
    empty = orders_active(fb);
    CHECK(strcmp(empty, "{\"status\":200,\"count\":0,\"items\":[]}") == 0, "orders after clear_all: %s", empty);
    floorbell_string_free(empty);

    /* Every change reached the subscriber as §3.4 spells it, in seq order. */
    int created = wait_for_change(seen, FLOORBELL_CHANGE_ORDER, "\"type\":\"ORDER_CREATED\"");
    int located = wait_for_change(seen, FLOORBELL_CHANGE_ORDER, "\"state\":\"located\"");
    int paged = wait_for_change(seen, FLOORBELL_CHANGE_ORDER, "\"type\":\"ORDER_PAGED\"");
    int gone = wait_for_change(seen, FLOORBELL_CHANGE_ORDER, "\"name\":\"72\"}");
    CHECK(created >= 0 && located > created && paged > located && gone > paged,
          "order changes missing or out of order: %d %d %d %d", created, located, paged, gone);
    CHECK(wait_for_change(seen, FLOORBELL_CHANGE_ORDER, "\"state\":\"cleared\",") >= 0, "no cleared change");
    CHECK(count_changes(seen, FLOORBELL_CHANGE_ORDER, "ORDER_PAGED") == 2, "pages heard: %d",
          count_changes(seen, FLOORBELL_CHANGE_ORDER, "ORDER_PAGED"));
    /* start 66, modify, 2 pages, clear, start 71, start 72, clear-all (2). */
    int waited = 0;
    const struct timespec tick = {.tv_sec = 0, .tv_nsec = 10 * 1000 * 1000};
    while (count_changes(seen, FLOORBELL_CHANGE_ORDER, "\"type\":\"ORDER_") < 9 && waited++ < TIMEOUT_SECS * 100)
        nanosleep(&tick, NULL);
    CHECK(count_changes(seen, FLOORBELL_CHANGE_ORDER, "\"type\":\"ORDER_") == 9, "order changes heard: %d, expected 9",
          count_changes(seen, FLOORBELL_CHANGE_ORDER, "\"type\":\"ORDER_"));
}

/* The button opens the token window of GET /api/v2/accesstoken/generate, and
 * an order started over HTTP reaches the callback. */
static void button_and_http_order(floorbell_engine *fb, uint16_t port, struct changes *seen) {
    const char *generate = "GET /api/v2/accesstoken/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    char *resp = http_exchange(port, generate);
    REQUIRE(resp != NULL, "cannot reach 127.0.0.1:%u", port);
    CHECK(strncmp(resp, "HTTP/1.1 403", 12) == 0, "token before the button: %s", resp);
    free(resp);
    CHECK_STATUS(floorbell_engine_press_button(fb), FLOORBELL_STATUS_OK);
    resp = http_exchange(port, generate);
    REQUIRE(resp != NULL, "cannot reach 127.0.0.1:%u", port);
    CHECK(strncmp(resp, "HTTP/1.1 201", 12) == 0 && strstr(http_body(resp), "\"token\":{\"name\":\"default\"") != NULL,
          "token after the button: %s", resp);
    free(resp);

    const char *body = "{\"name\":\"501\",\"orderType\":\"ON_PREMISE\",\"locationName\":\"9\"}";
    char request[512];
    snprintf(request, sizeof request,
             "POST /api/v2/activeorders HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " ADMIN_TOKEN
             "\r\nContent-Type: application/json\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
             strlen(body), body);
    resp = http_exchange(port, request);
    REQUIRE(resp != NULL, "cannot reach 127.0.0.1:%u", port);
    CHECK(strncmp(resp, "HTTP/1.1 201", 12) == 0, "POST activeorders: %s", resp);
    free(resp);
    int i = wait_for_change(seen, FLOORBELL_CHANGE_ORDER, "\"name\":\"501\"}");
    REQUIRE(i >= 0, "no FLOORBELL_CHANGE_ORDER for the HTTP order within %d s", TIMEOUT_SECS);
    pthread_mutex_lock(&seen->lock);
    CHECK(strncmp(seen->texts[i], "{\"elapsedTime\":", 15) == 0 &&
              strstr(seen->texts[i], "\"locationName\":\"9\",\"state\":\"located\"") != NULL &&
              strstr(seen->texts[i], "\",\"type\":\"ORDER_CREATED\",\"name\":\"501\"}") != NULL,
          "order change text: %s", seen->texts[i]);
    CHECK(seen->on_main_thread == 0, "a callback ran on the caller's thread");
    pthread_mutex_unlock(&seen->lock);
    char *listed = orders_active(fb);
    CHECK(strstr(listed, "\"name\":\"501\"") != NULL, "the HTTP order is not active: %s", listed);
    floorbell_string_free(listed);
    size_t cleared = 0;
    CHECK_STATUS(floorbell_engine_orders_clear_all(fb, &cleared), FLOORBELL_STATUS_OK);
    CHECK(cleared == 1, "cleared %zu", cleared);
}

/* Submitted without waiting: each reaches the subscriber after its commit. */
static void submit_without_waiting(floorbell_engine *fb, struct changes *seen) {
    /* Accepted, not yet on disk: never 0, which means durable. */
    CHECK_STATUS(floorbell_engine_submit_event(fb, "{\"code\":\"waiter_call\",\"table\":31}"), FLOORBELL_STATUS_QUEUED);
    CHECK_STATUS(floorbell_engine_submit_event(fb, "{\"code\":\"waiter_call\",\"table\":32}"), FLOORBELL_STATUS_QUEUED);
    CHECK_STATUS(floorbell_engine_submit_event(fb, "{\"code\":"), FLOORBELL_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(floorbell_engine_submit_event(NULL, "{}"), FLOORBELL_STATUS_NULL_POINTER);
    int a = wait_for_change(seen, FLOORBELL_CHANGE_EVENT, "\"table\":31,");
    int b = wait_for_change(seen, FLOORBELL_CHANGE_EVENT, "\"table\":32,");
    CHECK(a >= 0 && b > a, "submitted events heard at %d, %d", a, b);
    char *all = events_since(fb, NULL);
    CHECK(strstr(all, "\"table\":31,") != NULL && strstr(all, "\"table\":32,") != NULL, "submitted events: %s", all);
    floorbell_string_free(all);
}

/* Sends one command and checks the reply exactly; returns 1 when it matched. */
static int command_is(floorbell_engine *fb, uint64_t session, const char *command, const char *want) {
    char *reply = NULL;
    floorbell_status s = floorbell_session_command(fb, session, command, &reply);
    CHECK(s == FLOORBELL_STATUS_OK && reply != NULL, "command '%s': status %d", command, (int)s);
    if (s != FLOORBELL_STATUS_OK || reply == NULL) return 0;
    int ok = strcmp(reply, want) == 0;
    CHECK(ok, "command '%s' replied '%s', expected '%s'", command, reply, want);
    floorbell_string_free(reply);
    return ok;
}

static void ticket_through_sessions(floorbell_engine *fb, struct changes *seen) {
    char *token = NULL;
    CHECK_STATUS(floorbell_engine_staff_add(fb, "Anna", &token), FLOORBELL_STATUS_OK);
    REQUIRE(token != NULL && strlen(token) >= 16, "staff token: %s", token ? token : "NULL");
    char *again = (char *)"sentinel";
    CHECK_STATUS(floorbell_engine_staff_add(fb, "Anna", &again), FLOORBELL_STATUS_CONFLICT);
    CHECK(strcmp(again, "sentinel") == 0, "out_token written on failure");

    uint64_t kiosk = 0, staff = 0, display = 0;
    CHECK_STATUS(floorbell_session_open(fb, "kiosk", &kiosk), FLOORBELL_STATUS_OK);
    CHECK_STATUS(floorbell_session_open(fb, "staff", &staff), FLOORBELL_STATUS_OK);
    CHECK_STATUS(floorbell_session_open(fb, "display", &display), FLOORBELL_STATUS_OK);
    CHECK(kiosk != staff && staff != display && kiosk != display, "session ids repeat");

    /* `new`: the ticket JSON, with `start` the creation time (checked by shape). */
    char *reply = NULL;
    CHECK_STATUS(floorbell_session_command(fb, kiosk, "new ann@example.com Ann Lee", &reply), FLOORBELL_STATUS_OK);
    REQUIRE(reply != NULL, "no reply to new");
    const char *head = "success new {\"id\":0,\"email\":\"ann@example.com\",\"name\":\"Ann Lee\",\"staff\":\"{}\","
                       "\"start\":\"";
    const char *tail = "\",\"end\":\"1970-01-01T00:00:00Z\"}";
    size_t rlen = strlen(reply), hlen = strlen(head), tlen = strlen(tail);
    CHECK(rlen == hlen + 20 + tlen && strncmp(reply, head, hlen) == 0 && strcmp(reply + rlen - tlen, tail) == 0 &&
              reply[hlen + 4] == '-' && reply[hlen + 10] == 'T' && reply[hlen + 19] == 'Z',
          "new replied '%s'", reply);
    floorbell_string_free(reply);

    command_is(fb, kiosk, "query ann@example.com", "success query Ann Lee");
    command_is(fb, staff, "accept 0", "error accept you do not have a table chosen");
    char pick[256];
    snprintf(pick, sizeof pick, "pick 0 %s", token);
    command_is(fb, staff, pick, "success pick 0");
    command_is(fb, staff, "accept 0", "success claimed 0");
    command_is(fb, staff, "complete 0", "success complete 0");
    command_is(fb, staff, "complete 0", "error complete the ticket has already been completed or cancelled");
    command_is(fb, staff, "dance", "error dance malformed command");
    floorbell_string_free(token);

    /* The display's broadcasts reach the subscriber, in order. */
    int p = wait_for_change(seen, FLOORBELL_CHANGE_TICKET, "pick 0");
    int c = wait_for_change(seen, FLOORBELL_CHANGE_TICKET, "claimed 0 0");
    int d = wait_for_change(seen, FLOORBELL_CHANGE_TICKET, "complete 0");
    CHECK(p >= 0 && c > p && d > c, "ticket broadcasts missing or out of order: %d %d %d", p, c, d);

    CHECK_STATUS(floorbell_session_close(fb, staff), FLOORBELL_STATUS_OK);
    CHECK(wait_for_change(seen, FLOORBELL_CHANGE_TICKET, "unpick 0") >= 0, "no unpick after the staff session closed");
    CHECK_STATUS(floorbell_session_close(fb, staff), FLOORBELL_STATUS_NOT_FOUND);
    CHECK_STATUS(floorbell_session_close(fb, kiosk), FLOORBELL_STATUS_OK);
    /* The display session is left open: close must end it. */
    CHECK_STATUS(floorbell_engine_staff_remove(fb, "Anna"), FLOORBELL_STATUS_OK);
}

static void unsubscribe_stops_callbacks(floorbell_engine *fb, struct changes *seen, uint64_t sub) {
    CHECK_STATUS(floorbell_engine_unsubscribe(fb, sub), FLOORBELL_STATUS_OK);
    CHECK_STATUS(floorbell_engine_unsubscribe(fb, sub), FLOORBELL_STATUS_NOT_FOUND);
    int before = change_count(seen);
    /* A second subscriber as a barrier: callbacks run in commit order on one
     * thread, so once it hears the event the first one would have too. */
    static struct changes barrier = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    barrier.main_thread = pthread_self();
    uint64_t sub2 = 0;
    CHECK_STATUS(floorbell_engine_subscribe(fb, on_change, &barrier, &sub2), FLOORBELL_STATUS_OK);
    CHECK(sub2 != sub, "subscription ids repeat");
    char hash[11];
    CHECK_STATUS(floorbell_engine_publish_event(fb, "{\"code\":\"save_order\"}", hash), FLOORBELL_STATUS_OK);
    CHECK(wait_for_change(&barrier, FLOORBELL_CHANGE_EVENT, hash) >= 0, "barrier subscriber heard nothing");
    CHECK(change_count(seen) == before, "an unsubscribed callback was called (%d → %d)", before, change_count(seen));
    CHECK_STATUS(floorbell_engine_unsubscribe(fb, sub2), FLOORBELL_STATUS_OK);
    for (int i = 0; i < barrier.count; i++) free(barrier.texts[i]);
}

/* --- a callback that falls behind -------------------------------------- */

struct held {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int released;
    struct changes *seen;
};

static void on_change_held(void *user_data, floorbell_change kind, const char *data, size_t length) {
    struct held *h = user_data;
    pthread_mutex_lock(&h->lock);
    while (!h->released) pthread_cond_wait(&h->cond, &h->lock);
    pthread_mutex_unlock(&h->lock);
    on_change(h->seen, kind, data, length);
}

/* A callback held while 60 events commit, with a 2 KiB callback queue: it
 * hears the first ones, then FLOORBELL_CHANGE_LAGGED with the number it
 * missed, then the next event; events_since its last hash gives the rest. */
static void lagging_callback(const char *dir) {
    char sub_dir[4096];
    snprintf(sub_dir, sizeof sub_dir, "%s/lagging", dir);
    floorbell_engine *fb = NULL;
    CHECK_STATUS(floorbell_engine_open(sub_dir, CONFIG "callback-queue-bytes = 2048\n", &fb), FLOORBELL_STATUS_OK);
    REQUIRE(fb != NULL, "engine_open gave no handle");
    struct changes seen = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    seen.main_thread = pthread_self();
    struct held held = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER, .seen = &seen};
    CHECK_STATUS(floorbell_engine_subscribe(fb, on_change_held, &held, NULL), FLOORBELL_STATUS_OK);
    char hashes[61][11];
    for (int t = 0; t < 60; t++) {
        char event[64];
        snprintf(event, sizeof event, "{\"code\":\"waiter_call\",\"table\":%d}", t);
        CHECK_STATUS(floorbell_engine_publish_event(fb, event, hashes[t]), FLOORBELL_STATUS_OK);
    }
    pthread_mutex_lock(&held.lock);
    held.released = 1;
    pthread_cond_broadcast(&held.cond);
    pthread_mutex_unlock(&held.lock);
    int lag = wait_for_change(&seen, FLOORBELL_CHANGE_LAGGED, "");
    REQUIRE(lag > 0, "no FLOORBELL_CHANGE_LAGGED after the first change within %d s", TIMEOUT_SECS);
    CHECK_STATUS(floorbell_engine_publish_event(fb, "{\"code\":\"waiter_call\",\"table\":60}", hashes[60]),
                 FLOORBELL_STATUS_OK);
    int last = wait_for_change(&seen, FLOORBELL_CHANGE_EVENT, hashes[60]);
    CHECK(last > lag, "no event after the notice");
    pthread_mutex_lock(&seen.lock);
    int missed = atoi(seen.texts[lag]);
    /* Before the notice the first events published; after it, the ones after
     * those missed (a publish may return before its change reaches the
     * callback thread: then it is heard after the notice). */
    CHECK(seen.count == 61 - missed + 1, "heard %d changes with %d missed", seen.count, missed);
    for (int i = 0; i < seen.count; i++) {
        if (i == lag) continue;
        int t = i < lag ? i : lag + missed + (i - lag - 1);
        CHECK(t <= 60 && seen.kinds[i] == FLOORBELL_CHANGE_EVENT && strstr(seen.texts[i], hashes[t]) != NULL,
              "change %d is not event %d: %s", i, t, seen.texts[i]);
    }
    pthread_mutex_unlock(&seen.lock);
    /* The resync: everything after the last event heard, nothing before. */
    char *rest = events_since(fb, hashes[lag - 1]);
    for (int t = 0; t <= 60; t++) {
        CHECK((strstr(rest, hashes[t]) != NULL) == (t >= lag), "event %d in the resync: %s", t, rest);
    }
    floorbell_string_free(rest);
    CHECK_STATUS(floorbell_engine_close(fb), FLOORBELL_STATUS_OK);
    for (int i = 0; i < seen.count; i++) free(seen.texts[i]);
}

int main(void) {
    char dir[] = "/tmp/floorbell-c-test-XXXXXX";
    REQUIRE(mkdtemp(dir) != NULL, "mkdtemp: %s", strerror(errno));

    floorbell_engine *fb = NULL;
    CHECK_STATUS(floorbell_engine_open(dir, CONFIG, &fb), FLOORBELL_STATUS_OK);
    REQUIRE(fb != NULL, "engine_open gave no handle");

    char hash[11];
    publish_and_read_back(fb, hash);
    bad_calls_change_nothing(fb);
    open_errors(dir);

    uint16_t port = 0;
    serve_and_read_over_http(fb, hash, &port);

    struct changes seen = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    seen.main_thread = pthread_self();
    uint64_t sub = 0;
    callback_for_http_publish(fb, port, &seen, &sub);
    orders_through_the_abi(fb, &seen);
    button_and_http_order(fb, port, &seen);
    submit_without_waiting(fb, &seen);
    ticket_through_sessions(fb, &seen);
    unsubscribe_stops_callbacks(fb, &seen, sub);
    lagging_callback(dir);

    CHECK_STATUS(floorbell_engine_stop_serving(fb), FLOORBELL_STATUS_OK);
    char *late = http_exchange(port, "GET /api/v4/events?hash=none HTTP/1.1\r\ntoken: " QR_TOKEN "\r\n\r\n");
    CHECK(late == NULL, "still serving after stop_serving: %s", late);
    free(late);
    CHECK_STATUS(floorbell_engine_close(fb), FLOORBELL_STATUS_OK);

    /* Reopened: what was acknowledged is there. */
    fb = NULL;
    CHECK_STATUS(floorbell_engine_open(dir, CONFIG, &fb), FLOORBELL_STATUS_OK);
    REQUIRE(fb != NULL, "reopen gave no handle");
    char *all = events_since(fb, NULL);
    CHECK(strstr(all, hash) != NULL, "event %s lost across close/open: %s", hash, all);
    floorbell_string_free(all);
    CHECK_STATUS(floorbell_engine_close(fb), FLOORBELL_STATUS_OK);

    for (int i = 0; i < seen.count; i++) free(seen.texts[i]);
    nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);

    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
