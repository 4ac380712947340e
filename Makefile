.PHONY: run test lint bench openapi

run:
	scripts/run.sh

test:
	scripts/test.sh

lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy sandbox

bench:
	.venv/bin/python bench/e2e_latency.py

# The API's schema, committed: tests/evaluations/api/test_schema_matches_views.py fails until it is.
openapi:
	.venv/bin/python manage.py spectacular --file docs/openapi.yaml --validate --fail-on-warn
