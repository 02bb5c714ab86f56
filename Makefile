# edge — one entry point: deps, all, test, run, bench, fuzz, clean.
#
#   make              build build/edge, build/origin-sim, functions and tests
#   make run          build, then start redis + origin-sim + edge (conf/edge.conf)
#   make test         unit + integration tests; ends with "N passed, N failed"
#   make SANITIZE=1 … the same with ASan + UBSan, in build/san/
#   make fuzz         libFuzzer targets (clang), FUZZ_TIME seconds each
#   make fuzz-smoke   build them and run their committed seeds once (CI)
#   make deps         install missing Debian packages (as root), else print the command

SANITIZE ?= 0
CC ?= cc
ifeq ($(CC),cc)
CC := gcc
endif

ifeq ($(SANITIZE),1)
BUILD ?= build/san
SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
OPT ?= -O1
else
BUILD ?= build
SANFLAGS :=
OPT ?= -O2
endif

PKGS := libevent libevent_pthreads libevent_openssl libcares hiredis libnghttp2 openssl jansson libpcre2-8
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS = $(shell pkg-config --libs $(PKGS) 2>/dev/null)

LLHTTP_DIR := /usr/share/llhttp
LLHTTP_INC := /usr/share/include/llhttp

WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wformat=2 -Wvla
CFLAGS_BASE := -std=c11 -g $(OPT) -D_GNU_SOURCE -pthread -I. -I$(LLHTTP_INC) $(SANFLAGS)
ALL_CFLAGS = $(CFLAGS_BASE) $(WARN) $(PKG_CFLAGS) $(CFLAGS) -MMD -MP
ALL_LDFLAGS = $(SANFLAGS) -pthread $(LDFLAGS)
LIBS = $(PKG_LIBS) -ldl -lm

DEPS_STAMP := build/.deps-ok

# ---- sources ----------------------------------------------------------------
CONF_SRC := $(wildcard conf/*.c)
PROXY_SRC := $(filter-out proxy/main.c,$(wildcard proxy/*.c))
CACHE_SRC := $(wildcard cache/*.c)
TLS_SRC := $(wildcard tls/*.c)
COMPUTE_SRC := $(wildcard compute/*.c)
OSIM_SRC := $(wildcard origin-sim/*.c)
FN_SRC := $(wildcard compute/functions/*.c)
LLHTTP_SRC := $(wildcard $(LLHTTP_DIR)/*.c)

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))

LIB_CONF := $(BUILD)/lib/libconf.a
LIB_PROXY := $(BUILD)/lib/libproxy.a
LIB_CACHE := $(BUILD)/lib/libcache.a
LIB_TLS := $(BUILD)/lib/libtls.a
LIB_COMPUTE := $(BUILD)/lib/libcompute.a
LIB_LLHTTP := $(BUILD)/lib/libllhttp.a
# link order: users before what they use
EDGE_LIBS := $(LIB_PROXY) $(LIB_TLS) $(LIB_CACHE) $(LIB_COMPUTE) $(LIB_CONF) $(LIB_LLHTTP)

UNIT_SRC := $(wildcard tests/unit/*_test.c)
UNIT_BIN := $(patsubst tests/unit/%.c,$(BUILD)/tests/unit/%,$(UNIT_SRC))
INTEG_SRC := $(wildcard tests/integration/*_test.c)
INTEG_BIN := $(patsubst tests/integration/%.c,$(BUILD)/tests/integration/%,$(INTEG_SRC))
HARNESS_SRC := $(filter-out $(INTEG_SRC),$(wildcard tests/integration/*.c))
FN_SO := $(patsubst compute/functions/%.c,$(BUILD)/functions/%.so,$(FN_SRC))

BENCH_SRC := $(filter-out bench/main.c,$(wildcard bench/*.c))
BENCH_LIB := $(BUILD)/lib/libbench.a
BINS := $(BUILD)/edge $(BUILD)/origin-sim $(if $(wildcard bench/main.c),$(BUILD)/edge-bench)

.PHONY: all deps test unit integration run fuzz fuzz-build fuzz-smoke bench clean check-style format
all: $(BINS) $(FN_SO) $(UNIT_BIN) $(INTEG_BIN)

# ---- dependencies (Debian packages) -------------------------------------------
deps: $(DEPS_STAMP)
$(DEPS_STAMP): scripts/deps.sh
	@sh scripts/deps.sh
	@mkdir -p $(dir $@) && touch $@

# Every object waits for the packages (order-only: a stamp refresh rebuilds nothing).
$(BUILD)/obj/%.o: %.c | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

# llhttp is third-party C: compiled in, with its own (quieter) warning set.
$(BUILD)/obj/llhttp/%.o: $(LLHTTP_DIR)/%.c | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) -w -c $< -o $@

$(LIB_LLHTTP): $(patsubst $(LLHTTP_DIR)/%.c,$(BUILD)/obj/llhttp/%.o,$(LLHTTP_SRC))
$(LIB_CONF): $(call obj,$(CONF_SRC))
$(LIB_PROXY): $(call obj,$(PROXY_SRC))
$(LIB_CACHE): $(call obj,$(CACHE_SRC))
$(LIB_TLS): $(call obj,$(TLS_SRC))
$(LIB_COMPUTE): $(call obj,$(COMPUTE_SRC))
$(BUILD)/lib/%.a:
	@mkdir -p $(dir $@)
	@rm -f $@
	ar rcs $@ $^ $(if $^,,$(BUILD)/obj/empty.o)

$(BUILD)/obj/empty.o: | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	echo 'typedef int edge_empty_unit;' | $(CC) -x c -c - -o $@

$(BUILD)/lib/libcache.a $(BUILD)/lib/libcompute.a $(BUILD)/lib/libproxy.a $(BUILD)/lib/libtls.a: | $(BUILD)/obj/empty.o

$(BUILD)/edge: $(call obj,proxy/main.c) $(EDGE_LIBS)
	$(CC) $(ALL_LDFLAGS) -rdynamic $^ $(LIBS) -o $@

$(BENCH_LIB): $(call obj,$(BENCH_SRC))
$(BUILD)/lib/libbench.a: | $(BUILD)/obj/empty.o

# edge-bench: the load generator (bench/main.c + the rest of bench/*.c)
$(BUILD)/edge-bench: $(call obj,bench/main.c) $(BENCH_LIB) $(call obj,conf/value.c) $(LIB_LLHTTP)
	$(CC) $(ALL_LDFLAGS) $^ $(LIBS) -o $@

$(BUILD)/origin-sim: $(call obj,$(OSIM_SRC)) $(call obj,conf/value.c) $(LIB_LLHTTP)
	$(CC) $(ALL_LDFLAGS) $^ $(LIBS) -o $@

# Edge functions: built against compute/edgefn.h only (plus, per function,
# the libraries named in FN_LIBS_<name>).
FN_LIBS_jwt := -lcrypto
$(BUILD)/functions/%.so: compute/functions/%.c compute/edgefn.h | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) $(WARN) -fPIC -shared $(CFLAGS) $< $(FN_LIBS_$*) -o $@

# ---- tests --------------------------------------------------------------------
# A test links the libraries of the module its name starts with, so one
# module's tests build while another module is half-written.
mod_libs = $(strip $(if $(filter cache%,$(1)),$(LIB_CACHE) $(LIB_CONF),\
	$(if $(filter tls%,$(1)),$(LIB_TLS) $(LIB_CONF),\
	$(if $(filter compute% kv% fn%,$(1)),$(LIB_COMPUTE) $(LIB_CONF),\
	$(if $(filter conf%,$(1)),$(LIB_CONF),\
	$(if $(filter bench%,$(1)),$(BENCH_LIB) $(call obj,conf/value.c),$(EDGE_LIBS)))))))

.SECONDEXPANSION:
$(BUILD)/tests/unit/%: $(call obj,tests/unit/%.c) $$(call mod_libs,$$*) $(LIB_LLHTTP)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -rdynamic $^ $(LIBS) -lcmocka -o $@

# Integration tests drive processes; they link the harness (and, for tests
# of one part such as dns_test, that part's objects: see the rules below).
$(BUILD)/tests/integration/%: $(call obj,tests/integration/%.c) $(call obj,$(HARNESS_SRC)) $(call obj,conf/value.c)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) $^ $(LIBS) -lcmocka -lcurl -o $@

# The demo's TLS files (conf/edge.conf and conf/examples/ name them), made offline.
DEMO_CERT := var/tls/localhost.crt
$(DEMO_CERT): | $(DEPS_STAMP)
	@sh scripts/demo-cert.sh var/tls

test: all $(DEMO_CERT)
	@BUILD=$(BUILD) sh tests/run.sh $(BUILD)

unit: $(UNIT_BIN)
	@BUILD=$(BUILD) sh tests/run.sh $(BUILD) unit

integration: all $(DEMO_CERT)
	@BUILD=$(BUILD) sh tests/run.sh $(BUILD) integration

# ---- demo ---------------------------------------------------------------------
run: all $(DEMO_CERT)
	@bash scripts/run.sh $(BUILD)

# ---- fuzzing (clang libFuzzer + ASan/UBSan) -------------------------------------
FUZZ_TIME ?= 60
FUZZ_BUILD := build/fuzz
FUZZ_SRC := $(wildcard tests/fuzz/*_fuzz.c)
FUZZ_BIN := $(patsubst tests/fuzz/%.c,$(FUZZ_BUILD)/%,$(FUZZ_SRC))
FUZZ_FLAGS := -std=c11 -g -O1 -D_GNU_SOURCE -pthread -I. -I$(LLHTTP_INC) \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined $(WARN)
FUZZ_LIB_SRC := $(CONF_SRC) $(CACHE_SRC) $(COMPUTE_SRC) $(TLS_SRC) $(filter-out proxy/main.c,$(PROXY_SRC)) $(LLHTTP_SRC)

FUZZ_LLHTTP_OBJ := $(patsubst $(LLHTTP_DIR)/%.c,$(FUZZ_BUILD)/llhttp/%.o,$(LLHTTP_SRC))
fuzz-build: $(FUZZ_BIN)
$(FUZZ_BUILD)/llhttp/%.o: $(LLHTTP_DIR)/%.c | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	clang -std=c11 -g -O1 -fsanitize=fuzzer-no-link,address,undefined -I$(LLHTTP_INC) -w -c $< -o $@
$(FUZZ_BUILD)/%: tests/fuzz/%.c $(filter-out $(LLHTTP_SRC),$(FUZZ_LIB_SRC)) $(FUZZ_LLHTTP_OBJ) | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	clang $(FUZZ_FLAGS) -Wno-unused-command-line-argument $(PKG_CFLAGS) $< \
		$(filter-out $(LLHTTP_SRC),$(FUZZ_LIB_SRC)) $(FUZZ_LLHTTP_OBJ) $(PKG_LIBS) -ldl -lm -o $@

fuzz: fuzz-build
	@for f in $(FUZZ_BIN); do n=$$(basename $$f); \
		mkdir -p build/fuzz/corpus-$$n; \
		echo "fuzz: $$n for $(FUZZ_TIME)s"; \
		$$f -max_total_time=$(FUZZ_TIME) -timeout=10 -rss_limit_mb=2048 \
			build/fuzz/corpus-$$n tests/fuzz/corpus/$$n || exit 1; done

# CI: every target builds (clang's warnings differ from gcc's) and runs its
# committed seeds once, so that the fuzzers cannot rot between fuzzing runs
fuzz-smoke: fuzz-build
	@for f in $(FUZZ_BIN); do n=$$(basename $$f); \
		$$f -runs=0 tests/fuzz/corpus/$$n >/dev/null 2>&1 || { echo "fuzz-smoke: $$n fails on its seeds"; exit 1; }; done
	@echo "fuzz-smoke: $(words $(FUZZ_BIN)) targets ok"

# ---- benchmarks (not tests) -------------------------------------------------------
bench: all
	@bash bench/lab.sh $(BUILD)

# ---- style ------------------------------------------------------------------------
BANNED := '\b(strcpy|strcat|sprintf|vsprintf|gets|strtok|atoi|atol|alloca)\s*\('
check-style:
	@! grep -nE $(BANNED) $$(git ls-files '*.c' '*.h') || { echo "check-style: banned call above"; exit 1; }
	@echo "check-style: ok"

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build var/run

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)

# Integration tests that exercise one part directly (no edge process).
$(BUILD)/tests/integration/dns_test: $(call obj,proxy/dns.c proxy/log.c)
$(BUILD)/tests/integration/kv_test: $(LIB_COMPUTE)
$(BUILD)/tests/integration/bench_test: $(BENCH_LIB)
$(BUILD)/tests/integration/cache_disk_test: $(LIB_CACHE) $(LIB_CONF)
