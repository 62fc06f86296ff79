//! The small internal API over Cranelift that the rest of the CPU backend uses.
//!
//! Cranelift's public API moves between releases (0.135 interned `MemFlags` and changed
//! `FunctionBuilder::finalize`); everything version-specific lives here so that an upgrade touches
//! one file. The crates are pinned to `=0.135.8` (0.137 needs a newer rustc than this machine's).
//!
//! [`Jit`] owns a `JITModule` while functions are being defined; [`Jit::finish`] compiles them
//! (in parallel over kiln's pool: Cranelift compiles one function per `Context`, and only
//! placing the machine code needs the module), finalizes the module and returns [`Code`], which
//! keeps the executable memory alive and frees it on drop.

use super::{CpuError, Result};
use cranelift_codegen::control::ControlPlane;
use cranelift_codegen::ir::{types, AbiParam, Endianness, Function, MemFlagsData, Signature, UserFuncName};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_codegen::Context;
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{default_libcall_names, FuncId, Linkage, Module, ModuleReloc};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The type of every compiled kernel: `fn(slots, begin, end) -> status`.
///
/// `slots` points to one pointer per buffer slot of the kernel (see `plan::KernelPlan::slots`);
/// the function processes work units `begin..end` and returns 0, or a nonzero status for a
/// run-time error (see [`super::emit::STATUS_INT_DIV_ZERO`] and friends).
pub(crate) type KernelFn = unsafe extern "C" fn(*const *mut u8, u64, u64) -> u32;

/// Memory flags of kernel loads and stores: they cannot trap (every access is inside its buffer,
/// which `Schedule::verify` and `plan` establish) but may be unaligned.
pub(crate) fn mem() -> MemFlagsData {
    MemFlagsData::new().with_notrap()
}

/// Flags for `bitcast` between vector types (lane order must be explicit when the lane count
/// changes; x86-64 is little-endian).
pub(crate) fn little() -> MemFlagsData {
    MemFlagsData::new().with_endianness(Endianness::Little)
}

/// A Cranelift JIT module being filled with kernels.
pub(crate) struct Jit {
    module: JITModule,
    fctx: FunctionBuilderContext,
    /// Functions built by `define_kernel`, compiled together by `finish`, with their build time.
    built: Vec<(FuncId, Function, Duration)>,
    /// Render each function's CLIF text.
    keep_clif: bool,
}

/// One defined (built, not yet compiled) function: its id and CLIF text (if kept).
pub(crate) struct Defined {
    pub id: FuncId,
    pub clif: Option<String>,
}

/// One compiled function.
pub(crate) struct Compiled {
    pub f: KernelFn,
    /// Machine code listing, when `KILN_CPU_DISASM` is set.
    pub disasm: Option<String>,
    /// Building plus compiling.
    pub compile_time: Duration,
}

/// Cranelift's output for one function, before it is placed in the module.
struct MachineCode {
    bytes: Vec<u8>,
    alignment: u64,
    relocs: Vec<ModuleReloc>,
    disasm: Option<String>,
    time: Duration,
}

impl Jit {
    /// A module for the host ISA (features detected by `cranelift_native`), with the helper
    /// symbols kernels may call registered; `keep_clif` renders each function's CLIF text.
    pub(crate) fn new(keep_clif: bool) -> Result<Jit> {
        let mut flags = settings::builder();
        let set = |f: &mut settings::Builder, k: &str, v: &str| {
            f.set(k, v).map_err(|e| CpuError::Jit(format!("cranelift flag {k}={v}: {e}")))
        };
        // `emit` already produces optimised IR (constants hoisted, values computed once, vector
        // pieces), so Cranelift's mid-end (e-graph rewrites, GVN, LICM) finds nothing to improve:
        // measured with callgrind, the MLP step and layer-norm + gelu schedules ran the same
        // instruction counts per call (378 M, 737 M; W1 227 M) with opt_level "speed" and "none", and
        // compiling them took 13-15 % fewer instructions with "none". Register allocation and
        // instruction selection are the same at both levels.
        set(&mut flags, "opt_level", "none")?;
        set(&mut flags, "use_colocated_libcalls", "false")?;
        set(&mut flags, "is_pic", "false")?;
        set(&mut flags, "enable_verifier", if cfg!(debug_assertions) { "true" } else { "false" })?;
        let isa_builder =
            cranelift_native::builder().map_err(|e| CpuError::Jit(format!("host ISA not supported: {e}")))?;
        let isa = isa_builder
            .finish(settings::Flags::new(flags))
            .map_err(|e| CpuError::Jit(format!("cannot build the host ISA: {e}")))?;
        let mut jb = JITBuilder::with_isa(isa, default_libcall_names());
        for (name, ptr) in super::emit::helper_symbols() {
            jb.symbol(name, ptr);
        }
        let module = JITModule::new(jb);
        Ok(Jit { module, fctx: FunctionBuilderContext::new(), built: vec![], keep_clif })
    }

    /// The signature of [`KernelFn`].
    fn kernel_signature(&self) -> Signature {
        let ptr = self.module.target_config().pointer_type();
        let mut sig = self.module.make_signature();
        sig.params.push(AbiParam::new(ptr));
        sig.params.push(AbiParam::new(types::I64));
        sig.params.push(AbiParam::new(types::I64));
        sig.returns.push(AbiParam::new(types::I32));
        sig
    }

    /// Declares an imported function (a helper registered in [`Jit::new`]) for use in `func`.
    pub(crate) fn import(
        module: &mut JITModule,
        func: &mut Function,
        name: &str,
        params: &[types::Type],
        ret: types::Type,
    ) -> Result<cranelift_codegen::ir::FuncRef> {
        let mut sig = module.make_signature();
        sig.params.extend(params.iter().map(|&t| AbiParam::new(t)));
        sig.returns.push(AbiParam::new(ret));
        let id = module
            .declare_function(name, Linkage::Import, &sig)
            .map_err(|e| CpuError::Jit(format!("import {name}: {e}")))?;
        Ok(module.declare_func_in_func(id, func))
    }

    /// Defines one kernel function named `name`. `build` receives a builder positioned in the
    /// entry block (whose params are `slots, begin, end`) and the module (for imports); it must
    /// terminate every block it creates. Returns the id and the CLIF text (if kept);
    /// the function is compiled by [`Jit::finish`].
    pub(crate) fn define_kernel(
        &mut self,
        name: &str,
        build: impl FnOnce(&mut FunctionBuilder, &mut JITModule, [cranelift_codegen::ir::Value; 3]) -> Result<()>,
    ) -> Result<Defined> {
        let t0 = Instant::now();
        let sig = self.kernel_signature();
        let id = self
            .module
            .declare_function(name, Linkage::Local, &sig)
            .map_err(|e| CpuError::Jit(format!("declare {name}: {e}")))?;
        let mut func = Function::with_name_signature(UserFuncName::user(0, id.as_u32()), sig);
        {
            let mut b = FunctionBuilder::new(&mut func, &mut self.fctx);
            let entry = b.create_block();
            b.append_block_params_for_function_params(entry);
            b.switch_to_block(entry);
            b.seal_block(entry);
            let p = b.block_params(entry);
            let params = [p[0], p[1], p[2]];
            build(&mut b, &mut self.module, params)?;
            b.seal_all_blocks();
            b.finalize(self.module.target_config());
        }
        let clif = self.keep_clif.then(|| func.display().to_string());
        self.built.push((id, func, t0.elapsed()));
        Ok(Defined { id, clif })
    }

    /// Compiles every defined function (in parallel over the pool), finalizes the module and
    /// returns the code with the entry points of `ids`.
    pub(crate) fn finish(mut self, ids: &[FuncId]) -> Result<(Code, Vec<Compiled>)> {
        let built = std::mem::take(&mut self.built);
        let want_disasm = std::env::var_os("KILN_CPU_DISASM").is_some();
        let results: Vec<Mutex<Option<Result<MachineCode>>>> =
            built.iter().map(|_| Mutex::new(None)).collect();
        {
            let isa = self.module.isa();
            let compile_one = |i: usize| {
                let (id, func, build_time) = &built[i];
                let r = compile(isa, *id, func.clone(), want_disasm).map(|mut m| {
                    m.time += *build_time;
                    m
                });
                *results[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
            };
            super::pool::run(built.len(), &compile_one);
        }
        let mut compiled = std::collections::HashMap::new();
        for ((id, _, _), r) in built.iter().zip(results) {
            let m =
                r.into_inner().unwrap_or_else(|p| p.into_inner()).expect("every function was compiled")?;
            self.module
                .define_function_bytes(*id, m.alignment, &m.bytes, &m.relocs)
                .map_err(|e| CpuError::Jit(format!("placing kernel {id}: {e}")))?;
            compiled.insert(*id, (m.disasm, m.time));
        }
        self.module.finalize_definitions().map_err(|e| CpuError::Jit(format!("finalize: {e}")))?;
        let fns = ids
            .iter()
            .map(|&id| {
                let p = self.module.get_finalized_function(id);
                // SAFETY: `id` was defined by `define_kernel` with the signature of `KernelFn`
                // (pointer, i64, i64) -> i32 in the host's default calling convention, which is
                // `extern "C"`; the code stays mapped as long as the returned `Code` lives, and
                // every holder of these pointers keeps that `Code` alive (see `CpuExecutable`).
                let f = unsafe { std::mem::transmute::<*const u8, KernelFn>(p) };
                let (disasm, compile_time) = compiled.remove(&id).unwrap_or_default();
                Compiled { f, disasm, compile_time }
            })
            .collect();
        Ok((Code { module: Mutex::new(Some(self.module)) }, fns))
    }
}

/// Compiles one built function to machine code for `isa` (what `JITModule::define_function`
/// does, without placing the code), so that functions can be compiled on several threads.
fn compile(
    isa: &dyn cranelift_codegen::isa::TargetIsa,
    id: FuncId,
    func: Function,
    disasm: bool,
) -> Result<MachineCode> {
    let t0 = Instant::now();
    let mut ctx = Context::for_function(func);
    ctx.set_disasm(disasm);
    ctx.compile(isa, &mut ControlPlane::default())
        .map_err(|e| CpuError::Jit(format!("compiling kernel {id}: {:?}\n{}", e.inner, e.func.display())))?;
    let code = ctx.compiled_code().expect("compiled just now");
    let alignment = (code.buffer.alignment as u64)
        .max(isa.function_alignment().minimum as u64)
        .max(isa.symbol_alignment());
    let bytes = code.code_buffer().to_vec();
    let disasm = code.vcode.clone();
    let relocs =
        code.buffer.relocs().iter().map(|r| ModuleReloc::from_mach_reloc(r, &ctx.func, id)).collect();
    Ok(MachineCode { bytes, alignment, relocs, disasm, time: t0.elapsed() })
}

/// Finalized machine code. Dropping it unmaps the code, so it must outlive every [`KernelFn`]
/// taken from it (the executable keeps both together and drops the functions first).
pub(crate) struct Code {
    /// A `Mutex` only to make `Code: Sync` (`JITModule` is `Send` but not `Sync`); it is never
    /// touched after finalization except by `Drop`.
    module: Mutex<Option<JITModule>>,
}

impl Drop for Code {
    fn drop(&mut self) {
        let module = self.module.get_mut().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(m) = module {
            // SAFETY: the only pointers into this module's memory are the `KernelFn`s handed
            // out by `Jit::finish`; their owner (`CpuExecutable`) drops them with this `Code`, and
            // no call can be in flight while it is being dropped (`&mut self`).
            unsafe { m.free_memory() };
        }
    }
}
