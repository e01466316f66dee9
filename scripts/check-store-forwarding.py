#!/usr/bin/env python3
"""Looks for loads that store-to-load forwarding cannot serve in the datapath's functions.

A value built in a stack slot from narrow stores and read back with one wider load (or a load that straddles two
stores) cannot be forwarded from the store buffer: the load waits until the stores have reached the cache, about
15-20 cycles on these machines, and everything that depends on it waits too. The Swift compiler emits this pattern
when a struct whose 8-byte units mix fields of different members crosses a call (ScatterGatherArray did, with its
generation and optional address in one unit, on every push). This check disassembles the named functions of a
binary and reports each load from a stack slot that overlaps recent stores to the slot without lying inside the
latest of them. Straight-line windows only (reset at calls and returns), so it errs towards silence.

    scripts/check-store-forwarding.py BINARY SYMBOL-SUBSTRING... [--except SYMBOL-SUBSTRING...]

Scans every function whose (mangled) name contains one of the substrings, except those that contain one given after
--except (set-up code that runs once).

Exits 1 if any load is found, 0 otherwise.
"""
import re
import subprocess
import sys

REG8 = {'al', 'bl', 'cl', 'dl', 'sil', 'dil', 'spl', 'bpl'} | {f'r{i}b' for i in range(8, 16)}
REG16 = {'ax', 'bx', 'cx', 'dx', 'si', 'di', 'sp', 'bp'} | {f'r{i}w' for i in range(8, 16)}
REG32 = {'eax', 'ebx', 'ecx', 'edx', 'esi', 'edi', 'esp', 'ebp'} | {f'r{i}d' for i in range(8, 16)}
SLOT = re.compile(r'^(-?0x[0-9a-f]+|-?\d+)?\(%(rbp|rsp)\)$')


def width(mnemonic, register):
    """Bytes moved by a mov-family instruction, from its register operand (or its suffix)."""
    if mnemonic.startswith(('movdqu', 'movdqa', 'movups', 'movaps', 'movupd', 'movapd')):
        return 16
    if mnemonic in ('movq',):
        return 8
    if mnemonic in ('movd', 'movss'):
        return 4
    if mnemonic.startswith(('movzb', 'movsb')):
        return 1
    if mnemonic.startswith(('movzw', 'movsw')):
        return 2
    r = register.lstrip('%') if register.startswith('%') else ''
    if r.startswith('xmm'):
        return 16
    if r.startswith('ymm'):
        return 32
    if r in REG8:
        return 1
    if r in REG16:
        return 2
    if r in REG32:
        return 4
    if r:
        return 8
    return {'b': 1, 'w': 2, 'l': 4, 'q': 8}.get(mnemonic[-1], 8)


def scan(binary, name):
    out = subprocess.run(['objdump', '-d', '--no-show-raw-insn', binary, '--disassemble=' + name],
                         capture_output=True, text=True, check=True).stdout
    findings = []
    stores = []  # (base register, offset, bytes), most recent last
    for line in out.splitlines():
        parts = line.split('\t')
        if len(parts) < 2 or not re.match(r'\s+[0-9a-f]+:$', parts[0]):
            continue
        m = re.match(r'(\S+)\s*(.*)', parts[1].strip())
        if not m:
            continue
        mnemonic, operands = m.group(1), m.group(2)
        if mnemonic.startswith('call') or mnemonic.startswith('ret'):
            stores = []
            continue
        if not mnemonic.startswith('mov'):
            continue
        ops = [o.strip() for o in re.split(r',(?![^(]*\))', operands)]
        if len(ops) != 2:
            continue
        source, target = ops
        t, s = SLOT.match(target), SLOT.match(source)
        if t:
            stores.append((t.group(2), int(t.group(1) or '0', 0), width(mnemonic, source)))
            stores = stores[-48:]
        elif s:
            base, offset, n = s.group(2), int(s.group(1) or '0', 0), width(mnemonic, target)
            overlapping = [x for x in stores if x[0] == base and x[1] < offset + n and offset < x[1] + x[2]]
            if overlapping:
                last = overlapping[-1]
                if not (last[1] <= offset and offset + n <= last[1] + last[2]):
                    findings.append(f'{parts[0].strip()} {mnemonic} {operands}  (stores to the slot: '
                                    + ', '.join(f'{x[2]} bytes at {x[1]}' for x in overlapping) + ')')
    return findings


def main():
    if len(sys.argv) < 3:
        print(__doc__)
        return 2
    binary, args = sys.argv[1], sys.argv[2:]
    patterns, excluded = (args[:args.index('--except')], args[args.index('--except') + 1:]) if '--except' in args \
        else (args, [])
    nm = subprocess.run(['nm', binary], capture_output=True, text=True, check=True).stdout
    names = sorted({f[2] for f in (line.split() for line in nm.splitlines())
                    if len(f) == 3 and f[1] in 'tT' and any(p in f[2] for p in patterns)
                    and not any(x in f[2] for x in excluded)})
    bad = 0
    for name in names:
        for finding in scan(binary, name):
            print(f'store-forwarding: {name}: {finding}')
            bad += 1
    print(f'store-forwarding: {len(names)} functions scanned, {bad} loads that cannot be forwarded')
    return 1 if bad else 0


if __name__ == '__main__':
    sys.exit(main())
