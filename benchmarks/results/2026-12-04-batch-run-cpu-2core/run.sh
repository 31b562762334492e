#!/bin/bash
cd /work/main
PY=/work/main/.venv/bin/python
# warm both builds
PYTHONPATH=/tmp/before $PY benchmarks/micro/batch_step.py --rounds 1 --tokens 8 > /dev/null 2>&1
$PY benchmarks/micro/batch_step.py --rounds 1 --tokens 8 > /dev/null 2>&1
for i in 1 2 3; do
  for side in before after; do
    if [ $side = before ]; then PP=/tmp/before; else PP=/work/main; fi
    for n in 64 32; do
      echo "$side n=$n: $(PYTHONPATH=$PP nice $PY benchmarks/micro/batch_step.py --sequences $n --rounds 7 --ahead 2>&1 | tail -1)"
    done
  done
done
