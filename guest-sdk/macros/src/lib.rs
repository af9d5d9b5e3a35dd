//! `#[weir_sdk::job]`: turns one function into a Weir job component.
//!
//! The attribute keeps the function as written and adds the component's
//! exports (when compiling for `wasm32`) plus a `WEIR_JOBS` constant listing
//! the component's jobs, which native builds use.

use proc_macro::TokenStream;
use quote::quote;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Ident, ItemFn, Token, bracketed, parse_macro_input};

/// Optional arguments: `entries = [other_job, ...]` adds more jobs to the
/// component, selected with `weir run --entry NAME`.
struct JobArgs {
    extra: Vec<Ident>,
}

impl Parse for JobArgs {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        if input.is_empty() {
            return Ok(JobArgs { extra: vec![] });
        }
        let key: Ident = input.parse()?;
        if key != "entries" {
            return Err(syn::Error::new(
                key.span(),
                "unknown argument; expected `entries = [job_fn, ...]`",
            ));
        }
        input.parse::<Token![=]>()?;
        let content;
        bracketed!(content in input);
        let list: Punctuated<Ident, Token![,]> =
            content.parse_terminated(Ident::parse, Token![,])?;
        Ok(JobArgs {
            extra: list.into_iter().collect(),
        })
    }
}

/// Marks the function that builds a job:
/// `fn name(env: &mut Env, args: &Args) -> Result<(), Error>`.
///
/// ```ignore
/// #[weir_sdk::job]
/// fn wordcount(env: &mut Env, args: &Args) -> Result<(), Error> { /* ... */ Ok(()) }
///
/// // Several jobs in one component, selected with `--entry`:
/// #[weir_sdk::job(entries = [wordcount_v2])]
/// fn wordcount(env: &mut Env, args: &Args) -> Result<(), Error> { /* ... */ Ok(()) }
/// ```
#[proc_macro_attribute]
pub fn job(attr: TokenStream, item: TokenStream) -> TokenStream {
    let args = parse_macro_input!(attr as JobArgs);
    let func = parse_macro_input!(item as ItemFn);
    if func.sig.inputs.len() != 2 {
        return syn::Error::new_spanned(
            &func.sig,
            "a job function takes `(env: &mut Env, args: &Args)` and returns `Result<(), Error>`",
        )
        .to_compile_error()
        .into();
    }
    let main = func.sig.ident.clone();
    let names = std::iter::once(&main).chain(args.extra.iter());
    let entries = names.map(|n| {
        let s = n.to_string();
        quote! { (#s, #n as ::weir_sdk::JobFn) }
    });
    quote! {
        #func

        /// The jobs of this component, by entry name.
        pub const WEIR_JOBS: ::weir_sdk::Jobs = ::weir_sdk::Jobs(&[#(#entries),*]);

        ::weir_sdk::__export_jobs!(WEIR_JOBS);
    }
    .into()
}
