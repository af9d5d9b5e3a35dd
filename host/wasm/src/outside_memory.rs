//! What a memory snapshot cannot capture: state a job's core modules keep
//! outside their linear memories and change while the job runs — mutable
//! globals written by the job's functions, and tables they change. A
//! memory image restored into a fresh instance would silently lose it, so
//! memory snapshots are refused for such a job, naming what is in the way.
//!
//! What is known to be safe: the shadow stack pointer (`__stack_pointer`,
//! back at its initial value between calls), and globals and tables set
//! only while the instance is created (the start function and the linker's
//! initializers, which a restored instance runs again).

use wasmparser::{Name, Operator, Parser, Payload, TypeRef};

/// Functions that run only while an instance is created.
fn initializer(name: &str) -> bool {
    name.starts_with("__wasm_apply_")
        || name.starts_with("__wasm_init_")
        || name == "__wasm_call_ctors"
        || name == "_initialize"
}

/// Globals whose value between calls is their initial one.
fn balanced_global(name: &str) -> bool {
    name == "__stack_pointer"
}

#[derive(Default)]
struct CoreModule {
    imported_globals: Vec<String>,
    imported_funcs: u32,
    /// Defined globals: (mutable, name).
    globals: Vec<(bool, Option<String>)>,
    global_names: Vec<(u32, String)>,
    func_names: Vec<(u32, String)>,
    start: Option<u32>,
    /// Globals set and tables changed, by the defined function doing it.
    global_sets: Vec<(u32, u32)>,
    table_changes: Vec<u32>,
    next_func: u32,
}

impl CoreModule {
    fn global_name(&self, index: u32) -> Option<String> {
        let imported = self.imported_globals.len() as u32;
        if index < imported {
            return Some(self.imported_globals[index as usize].clone());
        }
        self.global_names
            .iter()
            .find(|(i, _)| *i == index)
            .map(|(_, n)| n.clone())
            .or_else(|| {
                self.globals
                    .get((index - imported) as usize)
                    .and_then(|(_, n)| n.clone())
            })
    }

    fn mutable(&self, index: u32) -> bool {
        let imported = self.imported_globals.len() as u32;
        index < imported
            || self
                .globals
                .get((index - imported) as usize)
                .is_some_and(|(m, _)| *m)
    }

    fn runs_only_at_start(&self, func: u32) -> bool {
        if self.start == Some(func) {
            return true;
        }
        self.func_names
            .iter()
            .any(|(i, n)| *i == func && initializer(n))
    }

    fn blockers(&self, which: usize, out: &mut Vec<String>) {
        let mut seen = Vec::new();
        for &(func, global) in &self.global_sets {
            if self.runs_only_at_start(func) || !self.mutable(global) || seen.contains(&global) {
                continue;
            }
            seen.push(global);
            match self.global_name(global) {
                Some(n) if balanced_global(&n) => {}
                Some(n) => out.push(format!(
                    "core module {which} writes global `{n}` as it runs"
                )),
                None => out.push(format!(
                    "core module {which} writes global {global} as it runs (the module has no \
                     names to tell what it is)"
                )),
            }
        }
        if self
            .table_changes
            .iter()
            .any(|f| !self.runs_only_at_start(*f))
        {
            out.push(format!("core module {which} changes a table as it runs"));
        }
    }
}

/// Why memory snapshots of the component `bytes` would lose state; empty
/// when its state lives in linear memory alone.
pub fn blockers(bytes: &[u8]) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    // Core modules may nest in components; one is open at a time.
    let mut stack: Vec<Option<CoreModule>> = Vec::new();
    let mut current: Option<CoreModule> = None;
    let mut which = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| e.to_string())?;
        match payload {
            Payload::ModuleSection { .. } => {
                stack.push(current.take());
                current = Some(CoreModule::default());
            }
            Payload::ComponentSection { .. } => stack.push(current.take()),
            Payload::End(_) => {
                if let Some(m) = current.take() {
                    which += 1;
                    m.blockers(which, &mut out);
                }
                current = stack.pop().flatten();
            }
            Payload::ImportSection(reader) => {
                let Some(m) = current.as_mut() else { continue };
                for import in reader.into_imports() {
                    let import = import.map_err(|e| e.to_string())?;
                    match import.ty {
                        TypeRef::Global(_) => m.imported_globals.push(import.name.to_owned()),
                        TypeRef::Func(_) | TypeRef::FuncExact(_) => m.imported_funcs += 1,
                        _ => {}
                    }
                }
                m.next_func = m.imported_funcs;
            }
            Payload::GlobalSection(reader) => {
                let Some(m) = current.as_mut() else { continue };
                for g in reader {
                    let g = g.map_err(|e| e.to_string())?;
                    m.globals.push((g.ty.mutable, None));
                }
            }
            Payload::ExportSection(reader) => {
                let Some(m) = current.as_mut() else { continue };
                for e in reader {
                    let e = e.map_err(|e| e.to_string())?;
                    if e.kind == wasmparser::ExternalKind::Global {
                        m.global_names.push((e.index, e.name.to_owned()));
                    }
                }
            }
            Payload::StartSection { func, .. } => {
                if let Some(m) = current.as_mut() {
                    m.start = Some(func);
                }
            }
            Payload::CodeSectionEntry(body) => {
                let Some(m) = current.as_mut() else { continue };
                let func = m.next_func;
                m.next_func += 1;
                let mut ops = body.get_operators_reader().map_err(|e| e.to_string())?;
                while !ops.eof() {
                    match ops.read().map_err(|e| e.to_string())? {
                        Operator::GlobalSet { global_index }
                            if !m.global_sets.contains(&(func, global_index)) =>
                        {
                            m.global_sets.push((func, global_index));
                        }
                        Operator::TableSet { .. }
                        | Operator::TableGrow { .. }
                        | Operator::TableFill { .. }
                        | Operator::TableCopy { .. }
                        | Operator::TableInit { .. }
                        | Operator::ElemDrop { .. }
                            if !m.table_changes.contains(&func) =>
                        {
                            m.table_changes.push(func);
                        }
                        _ => {}
                    }
                }
            }
            Payload::CustomSection(c) => {
                let Some(m) = current.as_mut() else { continue };
                if let wasmparser::KnownCustom::Name(names) = c.as_known() {
                    for n in names {
                        match n.map_err(|e| e.to_string())? {
                            Name::Global(map) => {
                                for naming in map {
                                    let naming = naming.map_err(|e| e.to_string())?;
                                    m.global_names.push((naming.index, naming.name.to_owned()));
                                }
                            }
                            Name::Function(map) => {
                                for naming in map {
                                    let naming = naming.map_err(|e| e.to_string())?;
                                    m.func_names.push((naming.index, naming.name.to_owned()));
                                }
                            }
                            _ => {}
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn component_with(core: &str) -> Vec<u8> {
        wat::parse_str(format!("(component (core module {core}))")).unwrap()
    }

    #[test]
    fn globals_and_tables_written_at_run_time_are_found() {
        let ok = component_with(
            r#"(global $__stack_pointer (mut i32) (i32.const 1024))
               (global $g (mut i32) (i32.const 0))
               (table 1 funcref)
               (func $init (global.set $g (i32.const 1)))
               (start $init)
               (func (export "f") (global.set $__stack_pointer (i32.const 5)))"#,
        );
        assert_eq!(blockers(&ok).unwrap(), Vec::<String>::new());
        let counter = component_with(
            r#"(global $count (mut i64) (i64.const 0))
               (func (export "f") (global.set $count (i64.const 1)))"#,
        );
        let b = blockers(&counter).unwrap();
        assert_eq!(b.len(), 1, "{b:?}");
        assert!(b[0].contains("`count`"), "{b:?}");
        let table = component_with(
            r#"(table 1 funcref)
               (func (export "f") (drop (table.grow (ref.null func) (i32.const 1))))"#,
        );
        assert!(blockers(&table).unwrap()[0].contains("table"));
    }
}
