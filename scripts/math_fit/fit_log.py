from remez import *
smax = mp.mpf('0.17158')
def f(z):
    if z == 0: return mp.mpf(0)
    s = mp.sqrt(z); return (2*mp.atanh(s) - 2*s)/s
w = lambda z: mp.mpf(1)
for n in [3,4,5, 6,7,8]:
    basis = [ (lambda k: (lambda z: z**k))(i+1) for i in range(n)]
    c, e = remez(f, basis, w, 0, smax**2, npts=600)
    print(n, 'abs err R', mp.nstr(e,5), 'log2', mp.nstr(mp.log(e,2),5), '-> rel log err log2', mp.nstr(mp.log(e/2,2),5))
    print('  ', [mp.nstr(x, 20) for x in c])
