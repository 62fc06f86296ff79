from remez import *
import sys
h = mp.mpf('0.3467')
def f(r): return mp.expm1(r) - r
def w(r): return 1/abs(mp.expm1(r)) if r != 0 else mp.mpf(1)
for n in [4,5,6, 9,10,11]:
    basis = [ (lambda k: (lambda r: r**k))(i+2) for i in range(n)]
    c, e = remez(f, basis, w, -h, h, npts=800)
    print(n, 'coeffs', 'maxrelerr', mp.nstr(e,5), 'log2', mp.nstr(mp.log(e,2),5))
    print('  ', [mp.nstr(x, 20) for x in c])
