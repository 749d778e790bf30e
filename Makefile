# trust-protocol. Everything runs on the Node 24 and Deno 2 pinned in package.json (node_modules/.bin),
# never on the machine's own node.
NODE    := node_modules/.bin/node
DENO    := node_modules/.bin/deno
VITEST  := node_modules/vitest/vitest.mjs
SOURCES := $(shell find src cmd -name '*.ts') package.json
REPORTS := .tmp/reports

.PHONY: all install build bundle release tools test test-node test-deno test-binary test-store lint demo upstream bench clean

all: build

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

install: node_modules/.installed

build: dist/trust-protocol dist/sdk/index.js

# esbuild bundles the CLI to one CommonJS file with no dependencies left: the npm package's
# command (`npm pack` runs this) and what the binary embeds. The SDK (`trust-protocol/sdk`) is an
# ES module of its own, importing only node: modules (Node and Deno have them), with tsc's types.
# --minify-whitespace drops comments and blanks: a quarter smaller, and all ASCII (a non-ASCII
# character in a kept comment made V8 hold the whole source as a two-byte string); together about
# 15 ms less CPU time at every start of the binary (docs/performance.md).
# The MCP SDK with zod, and the PostgreSQL driver, were two thirds of that file and only `mcp`,
# serve's /v1/mcp and `store` use them: each is a chunk of its own in dist/chunks/, and --alias
# points the bundle's imports of those packages at cmd/chunks/*.cjs, which load the chunk when the
# importing module is first evaluated (cmd/chunks/load.cjs says how; docs/decisions.md why).
bundle: dist/trust-protocol.cjs dist/sdk/index.js

ESBUILD_CJS := node_modules/.bin/esbuild --bundle --platform=node --format=cjs --target=node24 \
  --log-level=warning --minify-whitespace
CHUNKS := dist/chunks/mcp.cjs dist/chunks/postgres.cjs

dist/trust-protocol.cjs: node_modules/.installed $(SOURCES) $(wildcard cmd/chunks/*.cjs) Makefile $(CHUNKS)
	@mkdir -p dist
	$(ESBUILD_CJS) cmd/main.ts --outfile=dist/trust-protocol.cjs \
	  --alias:@modelcontextprotocol/server=./cmd/chunks/mcp.cjs \
	  --alias:@modelcontextprotocol/server/stdio=./cmd/chunks/mcp.cjs \
	  --alias:zod=./cmd/chunks/mcp.cjs --alias:postgres=./cmd/chunks/postgres.cjs
	@chmod 755 dist/trust-protocol.cjs

# The chunks hold the packages only (never a module of ours: see cmd/chunks/load.cjs). esbuild
# gives an ES module imported from CommonJS the whole module.exports as its default export, so the
# postgres chunk's module.exports is the driver's function itself.
dist/chunks/mcp.cjs: node_modules/.installed package-lock.json Makefile
	@mkdir -p dist/chunks
	printf '%s\n' "export * from '@modelcontextprotocol/server';" \
	  "export * from '@modelcontextprotocol/server/stdio';" "export { z } from 'zod';" | \
	  $(ESBUILD_CJS) --loader=ts --sourcefile=mcp-chunk.ts --outfile=$@

dist/chunks/postgres.cjs: node_modules/.installed package-lock.json Makefile
	@mkdir -p dist/chunks
	echo "module.exports = require('postgres').default;" | \
	  $(ESBUILD_CJS) --sourcefile=postgres-chunk.cjs --outfile=$@

dist/sdk/index.js: node_modules/.installed sdk/ts/index.ts Makefile
	@mkdir -p dist/sdk
	node_modules/.bin/esbuild sdk/ts/index.ts --bundle --platform=node --format=esm \
	  --target=node24 --log-level=warning --outfile=dist/sdk/index.js
	$(NODE) node_modules/typescript/bin/tsc --ignoreConfig sdk/ts/index.ts --declaration \
	  --emitDeclarationOnly --outDir dist/sdk --target es2024 --module nodenext \
	  --moduleResolution nodenext --types node --strict --skipLibCheck

# Node's single-executable support embeds the bundle in a copy of the pinned Node 24 binary
# (TOOLCHAIN.md: `deno compile` would download a runtime). The chunks are assets of its blob.
dist/trust-protocol: dist/trust-protocol.cjs
	printf '%s' '{"main":"dist/trust-protocol.cjs","output":"dist/sea-prep.blob","disableExperimentalSEAWarning":true,"useCodeCache":true,"useSnapshot":false,"execArgvExtension":"none","execArgv":["--max-semi-space-size=8"],"assets":{"mcp.cjs":"dist/chunks/mcp.cjs","postgres.cjs":"dist/chunks/postgres.cjs"}}' > dist/sea-config.json
	$(NODE) --experimental-sea-config dist/sea-config.json
	cp "$$($(NODE) -p process.execPath)" dist/trust-protocol.tmp
	chmod u+w dist/trust-protocol.tmp
	$(NODE) node_modules/postject/dist/cli.js dist/trust-protocol.tmp NODE_SEA_BLOB dist/sea-prep.blob \
	  --sentinel-fuse NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2 2>&1 | grep -v -e '.note.100' -e '^$$' || true
	mv dist/trust-protocol.tmp dist/trust-protocol
	@dist/trust-protocol --version

# A release directory: the binary, SHA256SUMS (GNU `sha256sum --strict -c` checks it) and
# SHA256SUMS.minisig, signed by `skill sign` with RELEASE_KEY (a `skill keygen` key; its password
# from RELEASE_PASSWORD_FILE or the prompt). `minisign -Vm SHA256SUMS -p KEY.pub` verifies it, and
# `install.sh --from dist/release --pubkey KEY.pub` checks both before installing.
RELEASE_KEY ?= release.key
RELEASE_DIR ?= dist/release
release: dist/trust-protocol
	@test -f "$(RELEASE_KEY)" || { echo "make release: no signing key $(RELEASE_KEY); create one with" \
	  "dist/trust-protocol skill keygen --out release, or pass RELEASE_KEY=PATH" >&2; exit 2; }
	rm -rf $(RELEASE_DIR) && mkdir -p $(RELEASE_DIR)
	cp dist/trust-protocol $(RELEASE_DIR)/trust-protocol
	dist/trust-protocol skill sign $(RELEASE_DIR) --key "$(RELEASE_KEY)" --name trust-protocol \
	  --version "$$(dist/trust-protocol --version | tr -d 'a-z -')" \
	  $(if $(RELEASE_PASSWORD_FILE),--password-file "$(RELEASE_PASSWORD_FILE)")
	mv $(RELEASE_DIR)/MANIFEST $(RELEASE_DIR)/SHA256SUMS
	mv $(RELEASE_DIR)/MANIFEST.minisig $(RELEASE_DIR)/SHA256SUMS.minisig
	cd $(RELEASE_DIR) && sha256sum --strict -c SHA256SUMS

# Debian tools the tests use: minisign (skill signature round trips both ways, release checks),
# strace (to fail one system call and test what a crash at that moment leaves), zsh and fish (to
# syntax-check their completion scripts), curl (the README's serve steps, run by
# test/binary/readme.test.ts), Go and Rust (the SDKs in sdk/go and sdk/rust, built by
# test/sdk/go.test.ts and rust.test.ts), rsyslog (the syslog receiver of test/cli/ship_syslog.test.ts).
# Skipped when installed;
# installs as root on a fresh Debian machine (CI).
tools:
	@command -v minisign >/dev/null && command -v strace >/dev/null && \
	  command -v zsh >/dev/null && command -v fish >/dev/null && command -v curl >/dev/null && \
	  command -v go >/dev/null && command -v rustc >/dev/null && command -v cargo >/dev/null && \
	  test -d /usr/share/gocode/src/golang.org/x/mod/sumdb/note && command -v rsyslogd >/dev/null && \
	  ls /usr/lib/*/rsyslog/lmnsd_gtls.so >/dev/null 2>&1 && ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
	  (apt-get update -qq && apt-get install -y -qq minisign strace zsh fish curl golang-go rustc cargo \
	    golang-golang-x-mod-dev rsyslog rsyslog-gnutls postgresql)

# The team store as a dimension of the suites (#19): the canary, request and brake suites again on
# the binary, every home a working copy of its own database on one PostgreSQL (TP_TEST_STORE;
# test/helpers/global_setup.ts). Suites that tamper with a home's files by hand are not in it: on
# the store the pull puts the store's bytes back or refuses the home (test/store/ tests that).
STORE_TESTS = test/canary test/serve/proxy.test.ts test/serve/gateway_canary.test.ts \
  test/serve/emergency.test.ts test/serve/brakes_seen.test.ts

# The whole suite: sources on Node, sources on Deno, then the CLI tests against the binary, then
# the store dimension.
# The last line is the total, `N passed, N failed`.
test: node_modules/.installed dist/trust-protocol tools
	@rm -rf $(REPORTS) && mkdir -p $(REPORTS)
	-TP_REQUIRE_TOOLS=1 $(NODE) $(VITEST) run --reporter=default --reporter=json --outputFile.json=$(REPORTS)/node.json
	-TP_REQUIRE_TOOLS=1 $(DENO) run -A $(VITEST) run --reporter=default --reporter=json --outputFile.json=$(REPORTS)/deno.json
	-TP_REQUIRE_TOOLS=1 TP_CLI=binary $(NODE) $(VITEST) run --reporter=default --reporter=json --outputFile.json=$(REPORTS)/binary.json test/cli test/canary test/serve test/skills test/monitor test/binary test/store
	-TP_REQUIRE_TOOLS=1 TP_TEST_STORE=postgres TP_CLI=binary $(NODE) $(VITEST) run --reporter=default --reporter=json --outputFile.json=$(REPORTS)/store.json $(STORE_TESTS)
	@$(NODE) test/summary.ts $(REPORTS)/node.json $(REPORTS)/deno.json $(REPORTS)/binary.json $(REPORTS)/store.json

test-node: node_modules/.installed
	$(NODE) $(VITEST) run $(ARGS)

test-deno: node_modules/.installed
	$(DENO) run -A $(VITEST) run $(ARGS)

test-binary: node_modules/.installed dist/trust-protocol
	TP_CLI=binary $(NODE) $(VITEST) run test/cli test/canary test/serve test/skills test/monitor test/binary test/store $(ARGS)

test-store: node_modules/.installed dist/trust-protocol
	TP_TEST_STORE=postgres TP_CLI=binary $(NODE) $(VITEST) run $(STORE_TESTS) $(ARGS)

lint: node_modules/.installed
	$(DENO) lint
	$(DENO) fmt --check
	$(NODE) node_modules/typescript/bin/tsc -p .

demo: node_modules/.installed dist/trust-protocol
	$(NODE) test/demo.ts

# The README without a network: a local HTTPS upstream standing in for the API (PORT=8443).
upstream: node_modules/.installed
	$(NODE) test/upstream.ts

# bench/run.ts writes docs/performance.md; the issue 18 benches print their tables and ratio lines
# (their sections of docs/performance.md are written by hand from them).
bench: node_modules/.installed dist/trust-protocol
	$(NODE) bench/run.ts
	$(NODE) bench/tlog.ts all 1000000
	$(NODE) bench/ship.ts 10
	$(NODE) bench/team_store.ts 3 40
	$(DENO) fmt --quiet docs/performance.md

clean:
	rm -rf dist .tmp
