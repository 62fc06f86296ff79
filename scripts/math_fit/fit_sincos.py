from remez import *
h = mp.pi/4 * mp.mpf('1.0001')
def fs(r): return mp.sin(r) - r
def ws(r): return 1/mp.sin(r) if r != 0 else mp.mpf(1)
def fc(r): return mp.cos(r) - 1 + r*r/2
def wc(r): return 1/mp.cos(r)
for n in [3,4,5,7,8]:
    basis = [ (lambda k: (lambda r: r**k))(2*i+3) for i in range(n)]
    c, e = remez(fs, basis, ws, 0, h, npts=500)
    print('sin', n, 'rel', mp.nstr(mp.log(e,2),5), [mp.nstr(x, 20) for x in c])
    basis = [ (lambda k: (lambda r: r**k))(2*i+4) for i in range(n)]
    c, e = remez(fc, basis, wc, 0, h, npts=500)
    print('cos', n, 'rel', mp.nstr(mp.log(e,2),5), [mp.nstr(x, 20) for x in c])
