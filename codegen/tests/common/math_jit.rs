//! JIT harness for the math accuracy tests: compiles a loop that applies one `math::emit`
//! function to arrays (vector body or one element per iteration) and calls it on slices.
//!
//! Included by path from `tests/math_accuracy.rs` next to `src/cpu/math.rs` itself, so it needs
//! nothing from the crate's public API.

use cranelift_codegen::ir::{types, AbiParam, InstBuilder, MemFlagsData, Type, UserFuncName, Value};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_codegen::Context;
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{default_libcall_names, Linkage, Module};

use super::math::{emit, MathCtx, MathFn};

type RawFn = unsafe extern "C" fn(*const u8, *const u8, *mut u8, usize);

/// One compiled kernel `out[i] = f(a[i], b[i])` over a whole array.
pub struct Kernel {
    _module: JITModule,
    f: RawFn,
    ty: Type,
    /// CLIF instructions `emit` added for one call (one vector or one scalar).
    pub clif_insts: usize,
    /// The VCode text (machine instructions after register allocation).
    pub vcode: String,
}

impl Kernel {
    /// Compiles `f` for values of type `ty` (F32X4, F64X2, F32, F64).
    pub fn new(f: MathFn, ty: Type, fma: bool) -> Kernel {
        Kernel::with_body(&format!("{f:?}"), ty, fma, f.arity(), &|b, args, ctx| emit(b, f, args, ty, ctx))
    }

    /// Compiles `out[i] = emit_body(a[i], b[i])` (`arity` 1: it gets `a[i]` only) for values of
    /// type `ty`.
    pub fn with_body(
        name: &str,
        ty: Type,
        fma: bool,
        arity: usize,
        emit_body: &dyn Fn(&mut FunctionBuilder, &[Value], &mut MathCtx) -> Value,
    ) -> Kernel {
        let mut flags = settings::builder();
        flags.set("opt_level", "speed").unwrap();
        flags.set("is_pic", "false").unwrap();
        let isa_builder = cranelift_native::builder().expect("host ISA");
        let isa = isa_builder.finish(settings::Flags::new(flags)).expect("ISA");
        let mut module = JITModule::new(JITBuilder::with_isa(isa, default_libcall_names()));
        let ptr = module.target_config().pointer_type();

        let mut ctx = Context::new();
        let sig = &mut ctx.func.signature;
        for _ in 0..3 {
            sig.params.push(AbiParam::new(ptr));
        }
        sig.params.push(AbiParam::new(types::I64));
        ctx.func.name = UserFuncName::user(0, 0);
        let mut fctx = FunctionBuilderContext::new();
        let clif_insts;
        {
            let mut b = FunctionBuilder::new(&mut ctx.func, &mut fctx);
            let entry = b.create_block();
            let header = b.create_block();
            let body = b.create_block();
            let exit = b.create_block();
            b.append_block_params_for_function_params(entry);
            b.append_block_param(header, types::I64);
            b.switch_to_block(entry);
            let [pa, pb, po, nbytes] = b.block_params(entry)[..] else { unreachable!() };
            let zero = b.ins().iconst(types::I64, 0);
            b.ins().jump(header, &[zero.into()]);

            b.switch_to_block(header);
            let i = b.block_params(header)[0];
            let more = b.ins().icmp(cranelift_codegen::ir::condcodes::IntCC::UnsignedLessThan, i, nbytes);
            b.ins().brif(more, body, &[], exit, &[]);

            b.switch_to_block(body);
            let flags = MemFlagsData::trusted();
            let aa = b.ins().iadd(pa, i);
            let x = b.ins().load(ty, flags, aa, 0);
            let mut args = vec![x];
            if arity == 2 {
                let ab = b.ins().iadd(pb, i);
                args.push(b.ins().load(ty, flags, ab, 0));
            }
            let before = b.func.dfg.num_insts();
            let mut mctx = MathCtx { fma };
            let y = emit_body(&mut b, &args, &mut mctx);
            clif_insts = b.func.dfg.num_insts() - before;
            let ao = b.ins().iadd(po, i);
            b.ins().store(flags, y, ao, 0);
            let step = b.ins().iconst(types::I64, ty.bytes() as i64);
            let next = b.ins().iadd(i, step);
            b.ins().jump(header, &[next.into()]);

            b.switch_to_block(exit);
            b.ins().return_(&[]);
            b.seal_all_blocks();
            b.finalize(module.target_config());
        }
        ctx.set_disasm(true);
        let id =
            module.declare_function(&format!("{name}_{ty}"), Linkage::Local, &ctx.func.signature).unwrap();
        module.define_function(id, &mut ctx).unwrap_or_else(|e| panic!("{name} {ty}: {e:?}"));
        let vcode = ctx.compiled_code().and_then(|c| c.vcode.clone()).unwrap_or_default();
        module.clear_context(&mut ctx);
        module.finalize_definitions().unwrap();
        let code = module.get_finalized_function(id);
        // SAFETY: the function was compiled with exactly this signature.
        let f = unsafe { std::mem::transmute::<*const u8, RawFn>(code) };
        Kernel { _module: module, f, ty, clif_insts, vcode }
    }

    fn run_bytes<T: Copy + Default>(&self, a: &[T], b: &[T]) -> Vec<T> {
        assert_eq!(std::mem::size_of::<T>(), self.ty.lane_bits() as usize / 8);
        assert_eq!(a.len(), b.len());
        let lanes = self.ty.lane_count() as usize;
        // Pad to whole vectors.
        let n = a.len().div_ceil(lanes) * lanes;
        let mut pa = a.to_vec();
        let mut pb = b.to_vec();
        pa.resize(n, T::default());
        pb.resize(n, T::default());
        let mut out = vec![T::default(); n];
        let bytes = n * std::mem::size_of::<T>();
        // SAFETY: the kernel reads `bytes` bytes from each input and writes as many to `out`,
        // all of which are allocated above; loads and stores are unaligned-safe on x86-64.
        unsafe {
            (self.f)(pa.as_ptr() as *const u8, pb.as_ptr() as *const u8, out.as_mut_ptr() as *mut u8, bytes)
        };
        out.truncate(a.len());
        out
    }

    pub fn run_f32(&self, a: &[f32], b: &[f32]) -> Vec<f32> {
        self.run_bytes(a, b)
    }

    pub fn run_f64(&self, a: &[f64], b: &[f64]) -> Vec<f64> {
        self.run_bytes(a, b)
    }
}
