# The two commands of the README's quick start, plus the pieces they are made of.
# Every target first runs scripts/setup.sh, which installs only what is missing.

.PHONY: setup run test lint unit integration bench bench-kbuild

setup:
	@scripts/setup.sh

# The main job: the built-in scenario catalogue on both arches with Debian's kernels.
run: setup
	.venv/bin/memharness run --html memharness-artifacts/report.html --json memharness-artifacts/report.json

# Everything CI runs: lint, unit tests, integration tests on real QEMU (both arches).
test: setup
	.venv/bin/tox -e lint,unit,integration

lint unit integration: setup
	.venv/bin/tox -e $@

bench: setup
	.venv/bin/python bench/boot.py
	.venv/bin/python bench/splat_corpus.py
	.venv/bin/python bench/hotplug.py
	.venv/bin/python bench/debian_image.py
	.venv/bin/python bench/default_run.py

# Incremental kernel rebuilds (a full build first: minutes).
bench-kbuild: setup
	.venv/bin/python bench/kbuild.py
