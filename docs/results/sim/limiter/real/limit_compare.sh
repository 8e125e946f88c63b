#!/bin/bash
# fixed vs adaptive in-flight limit on the real CPU worker: two bench runs, same arrivals;
# then bench/router_overhead.py with each default
cd /work/wt/limiter
for m in fixed adaptive; do
  echo "== $m $(date -u +%T)"
  PYTHONPATH=/tmp/lim_$m/src timeout 1500 .venv/bin/dynasor-sgl bench online --out /tmp/limcmp/$m \
    --set temperature=0.4 --threshold 0.4 --programs 20 --rates 0.5,1 --systems sglang,dynasor 2>&1 | tail -15
done
for m in fixed adaptive; do
  echo "== overhead $m $(date -u +%T)"
  PYTHONPATH=/tmp/lim_$m/src timeout 600 .venv/bin/python bench/router_overhead.py --out /tmp/limcmp/overhead-$m.json 2>&1 | tail -3
done
echo "== done $(date -u +%T)"
