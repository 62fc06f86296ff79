from remez import *
import sys
def fa(x): return mp.erf(x)
def wa(x): return 1/mp.erf(x) if x != 0 else mp.mpf(1)
for T in [0.75, 0.9, 1.0]:
  for n in [5,6,7, 11,12,13]:
    basis = [ (lambda k: (lambda x: x**k))(2*i+1) for i in range(n)]
    c, e = remez(fa, basis, wa, 0, T, npts=400)
    print('A T', T, n, 'rel', mp.nstr(mp.log(e,2),5))
for (T, X1) in [(0.75, 3.92), (0.9, 3.92), (1.0,3.92), (0.9, 5.93)]:
  mid = (T+X1)/2
  fb = lambda x: mp.erfc(x)
  wb = lambda x: 1/mp.erf(x)
  for n in ([6,7,8,9,10,11,12] if X1 < 4 else [16,18,20,22,24,26]):
    basis = [ (lambda k: (lambda x: mp.exp(-x*x)*(x-mid)**k))(i) for i in range(n)]
    c, e = remez(fb, basis, wb, T, X1, npts=400)
    print('B', T, X1, n, 'abs', mp.nstr(mp.log(e,2),5), 'maxcoef', mp.nstr(max(abs(x) for x in c),3))
