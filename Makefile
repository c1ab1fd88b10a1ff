# Makefile for konvox_webhooks
#
#   make              build
#   make install      install into the PostgreSQL found by pg_config
#   make test         install what is missing, build, install, run every test
#   make test-all     make test on each PostgreSQL release of test/releases,
#                     building the missing ones first (test/pg-build)
#   make demo         a throwaway cluster, a receiver, each documented event
#   make bench        the benchmark (see bench/RESULTS.md)

MODULE_big = konvox_webhooks
OBJS = konvox_webhooks.o outbox.o launcher.o worker.o claim.o record.o \
	retention.o endpoint.o http.o
PGFILEDESC = "konvox_webhooks - webhook delivery from PostgreSQL"

EXTENSION = konvox_webhooks
DATA = konvox_webhooks--1.0.sql konvox_webhooks--1.0--1.1.sql \
	konvox_webhooks--1.1--1.2.sql

REGRESS = event_types endpoints headers emit emit_trigger idempotency send_test history sign privileges operations
REGRESS_OPTS = --temp-instance=./tmp_check_regress \
	--temp-config=$(srcdir)/test/regress.conf --encoding=UTF8 --no-locale
TAP_TESTS = 1

PG_CPPFLAGS = $(shell curl-config --cflags 2>/dev/null)
# -Wextra, less unused parameters: PostgreSQL's callbacks and fmgr
# functions take arguments that an implementation need not use, and its
# own headers (ilist.h, bufpage.h, fmgr.h) would warn 39 times
PG_CFLAGS = -Wextra -Wno-unused-parameter
SHLIB_LINK = $(shell curl-config --libs 2>/dev/null || echo -lcurl)
# signing uses OpenSSL's HMAC when PostgreSQL was built with it
SHLIB_LINK += $(filter -lcrypto, $(LIBS))

EXTRA_CLEAN = tmp_check_regress test/node_modules

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs 2>/dev/null)
ifneq ($(wildcard $(PGXS)),)
include $(PGXS)
endif

$(OBJS): konvox_webhooks.h compat.h
claim.o endpoint.o record.o retention.o worker.o: worker.h

.PHONY: test test-all demo bench deps

deps:
	@test/deps

test:
	@test/run-tests

test-all:
	@test/test-all

demo:
	@test/demo

bench:
	@bench/run
