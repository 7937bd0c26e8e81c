/* Fake codex at near-zero cost, for benchmarks: read stdin to EOF, print one turn, exit 0.
 *
 * The turn: thread.started (a pseudo-random UUID-shaped id, or the id after "resume [--]"),
 * turn.started, item.completed agent_message "ok", turn.completed with usage 100/10.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static uint64_t next_random(uint64_t *state) {
    /* xorshift64* */
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return *state * 0x2545F4914F6CDD1DULL;
}

int main(int argc, char **argv) {
    char buffer[65536];
    while (read(STDIN_FILENO, buffer, sizeof buffer) > 0) {
    }

    char id[40];
    const char *thread_id = NULL;
    for (int i = 1; i + 1 < argc; i++) {
        if (strcmp(argv[i], "resume") == 0) {
            int at = strcmp(argv[i + 1], "--") == 0 ? i + 2 : i + 1; /* resume -- <id> - */
            if (at < argc && argv[at][0] != '-') {
                thread_id = argv[at];
            }
            break;
        }
    }
    if (thread_id == NULL) {
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        uint64_t state = ((uint64_t)now.tv_sec * 1000000007ULL) ^ (uint64_t)now.tv_nsec ^
                         ((uint64_t)getpid() << 32) ^ 0x9E3779B97F4A7C15ULL;
        uint64_t high = next_random(&state), low = next_random(&state);
        snprintf(id, sizeof id, "%08x-%04x-4%03x-%04x-%012llx", (unsigned)(high >> 32),
                 (unsigned)(high >> 16) & 0xffff, (unsigned)high & 0xfff,
                 (unsigned)(0x8000 | ((low >> 48) & 0x3fff)),
                 (unsigned long long)(low & 0xffffffffffffULL));
        thread_id = id;
    }

    char out[1024];
    int n = snprintf(out, sizeof out,
                     "{\"type\":\"thread.started\",\"thread_id\":\"%s\"}\n"
                     "{\"type\":\"turn.started\"}\n"
                     "{\"type\":\"item.completed\",\"item\":{\"id\":\"item_0\","
                     "\"type\":\"agent_message\",\"text\":\"ok\"}}\n"
                     "{\"type\":\"turn.completed\",\"usage\":{\"input_tokens\":100,"
                     "\"cached_input_tokens\":0,\"cache_write_input_tokens\":0,"
                     "\"output_tokens\":10,\"reasoning_output_tokens\":0}}\n",
                     thread_id);
    if (n < 0 || n >= (int)sizeof out) {
        return 2;
    }
    for (int written = 0; written < n;) {
        ssize_t w = write(STDOUT_FILENO, out + written, (size_t)(n - written));
        if (w <= 0) {
            return 1;
        }
        written += (int)w;
    }
    return 0;
}
