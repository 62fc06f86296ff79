from remez import *
fb = lambda x: mp.erfc(x)
wb = lambda x: 1/mp.erf(x)
import sys
T, X1 = float(sys.argv[1]), float(sys.argv[2])
ns = [int(a) for a in sys.argv[3].split(',')]
for cc in [1.5, 2.0, 2.5, 3.0, 3.5, 4.0]:
    for n in ns:
      tf = lambda x, cc=cc: (x-cc)/(x+cc)
      basis = [ (lambda k: (lambda x: mp.exp(-x*x)*tf(x)**k))(i) for i in range(n)]
      c, e = remez(fb, basis, wb, T, X1, npts=300, iters=60)
      print('B', T, X1, cc, n, 'abs', mp.nstr(mp.log(e,2),5), flush=True)
