//! `#[workflow]` on an inherent impl block, and the stand-alone `#[step]`.
//!
//! The impl block is re-emitted with its `#[step]` attributes removed,
//! followed by an `impl WorkflowDefinition` that registers every step
//! method with `WorkflowBuilder::__step_method` (a thin, hidden wrapper of
//! `step_with`), in source order.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{Attribute, FnArg, GenericParam, ImplItem, ImplItemFn, ItemImpl, LitStr, Pat, PatType, Signature, Type};

use crate::attrs::{doc_string, StepArgs, WorkflowArgs};
use crate::combine;

/// `#[step]` reached on its own: `#[workflow]` strips every `#[step]` it
/// handles, so this only runs when there is no enclosing `#[workflow]`.
pub fn step(item: TokenStream) -> TokenStream {
    let err = syn::Error::new(
        Span::call_site(),
        "#[step] only works on methods inside a #[workflow] impl block",
    );
    with_error(item, err)
}

pub fn workflow(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut imp: ItemImpl = match syn::parse2(item.clone()) {
        Ok(imp) => imp,
        Err(_) => {
            let err = syn::Error::new(
                Span::call_site(),
                "#[workflow] must be placed on an inherent `impl` block, e.g. `#[workflow] impl MyFlow { .. }`",
            );
            return with_error(item, err);
        }
    };
    // Strip first so that even on error the re-emitted block carries no
    // `#[step]` (which would add a misleading second error).
    let marked = take_step_attrs(&mut imp);
    let uses = step_path_uses(&imp.self_ty, &marked);
    match expand(args.clone(), &imp, marked) {
        Ok(definition) => quote!(#imp #uses #definition),
        Err(err) => {
            let stand_in = stand_in_definition(args, &imp);
            with_error(quote!(#imp #uses #stand_in), err)
        }
    }
}

/// When the steps do not expand, an `impl WorkflowDefinition` with no steps
/// still stands in, so that the user's `Flow.build()` resolves and the step's
/// error is the only one (not followed by "no method named `build`"). It
/// never runs: the compile error stops the build.
fn stand_in_definition(args: TokenStream, imp: &ItemImpl) -> TokenStream {
    if check_impl(imp).is_err() {
        return TokenStream::new();
    }
    // Unparsable arguments are reported already; the defaults stand in.
    let args = WorkflowArgs::parse(args).unwrap_or_default();
    let self_ty = &imp.self_ty;
    let (start, stop) = start_stop(&args);
    let name = args.name.clone().unwrap_or_else(|| default_name(self_ty));
    quote! {
        #[automatically_derived]
        impl ::stepwise::WorkflowDefinition for #self_ty {
            type Start = #start;
            type Stop = #stop;

            fn builder(self) -> ::stepwise::WorkflowBuilder<Self::Start, Self::Stop> {
                ::stepwise::WorkflowBuilder::<Self::Start, Self::Stop>::new(#name)
            }
        }
    }
}

/// The start and stop types: declared, or the built-in ones.
fn start_stop(args: &WorkflowArgs) -> (TokenStream, TokenStream) {
    let start = args
        .start
        .as_ref()
        .map_or_else(|| quote!(::stepwise::StartEvent), ToTokens::to_token_stream);
    let stop = args
        .stop
        .as_ref()
        .map_or_else(|| quote!(::stepwise::StopEvent), ToTokens::to_token_stream);
    (start, stop)
}

/// The item followed by the error, so IDEs still see the user's code.
fn with_error(item: TokenStream, err: syn::Error) -> TokenStream {
    let err = err.into_compile_error();
    quote!(#item #err)
}

fn expand(args: TokenStream, imp: &ItemImpl, marked: Vec<Marked>) -> syn::Result<TokenStream> {
    let args = WorkflowArgs::parse(args)?;
    check_impl(imp)?;
    let steps = collect_steps(imp, marked)?;
    if steps.is_empty() {
        return Err(syn::Error::new_spanned(
            impl_head(imp),
            "#[workflow] impl has no #[step] methods",
        ));
    }
    Ok(definition(imp, &args, &steps))
}

/// `#[workflow]` consumes the `#[step]` attributes before name resolution,
/// which would leave a user's `use stepwise::step;` reported as unused. So
/// each distinct path is imported once (`use step as _;`), which marks that
/// import used. `#[step]` also works without an import, so a bare `step`
/// gets a fallback: a glob import of a private module re-exporting
/// `::stepwise::step`. Globs are shadowed by explicit imports, so the user's
/// own import still wins (and is the one marked used).
fn step_path_uses(self_ty: &Type, marked: &[Marked]) -> TokenStream {
    let mut seen: Vec<String> = Vec::new();
    let mut uses = TokenStream::new();
    for attr in marked.iter().flat_map(|m| &m.attrs) {
        let path = attr.path();
        let key = path.to_token_stream().to_string();
        if !seen.contains(&key) {
            seen.push(key);
            uses.extend(quote_spanned! {path.span()=>
                #[allow(unused_imports)]
                use #path as _;
            });
        }
    }
    if uses.is_empty() {
        return uses;
    }
    let fallback = seen.iter().any(|k| k == "step").then(|| step_fallback(self_ty));
    quote! {
        #fallback
        const _: () = { #uses };
    }
}

/// The private module that lets a bare `#[step]` resolve without an import.
/// Named after the workflow type so two workflows in one module do not clash.
fn step_fallback(self_ty: &Type) -> TokenStream {
    let ident = match self_ty {
        Type::Path(p) => p.path.segments.last().map(|s| s.ident.to_string()),
        _ => None,
    };
    let module = quote::format_ident!("__stepwise_step_{}", ident.unwrap_or_default());
    quote! {
        #[doc(hidden)]
        #[allow(non_snake_case)]
        mod #module {
            #[allow(unused_imports)]
            pub use ::stepwise::step;
        }
        #[allow(unused_imports)]
        use #module::*;
    }
}

/// `impl Type`, for spans that point at the block header.
fn impl_head(imp: &ItemImpl) -> TokenStream {
    let (token, ty) = (&imp.impl_token, &imp.self_ty);
    quote!(#token #ty)
}

fn check_impl(imp: &ItemImpl) -> syn::Result<()> {
    if let Some((_, path, _)) = &imp.trait_ {
        return Err(syn::Error::new_spanned(
            path,
            "#[workflow] must be placed on an inherent impl block (`impl MyFlow { .. }`), \
             not on a trait impl",
        ));
    }
    if !imp.generics.params.is_empty() || imp.generics.where_clause.is_some() {
        return Err(syn::Error::new_spanned(
            &imp.generics,
            "#[workflow] does not support generic impl blocks: a workflow is one concrete type",
        ));
    }
    Ok(())
}

// ------------------------------------------------------------ step methods

/// An impl item that carried `#[step]` attribute(s), by index.
struct Marked {
    index: usize,
    attrs: Vec<Attribute>,
}

fn is_step_attr(attr: &Attribute) -> bool {
    let segments: Vec<String> = attr.path().segments.iter().map(|s| s.ident.to_string()).collect();
    matches!(
        segments.iter().map(String::as_str).collect::<Vec<_>>()[..],
        ["step"] | ["stepwise", "step"]
    )
}

fn item_attrs_mut(item: &mut ImplItem) -> Option<&mut Vec<Attribute>> {
    match item {
        ImplItem::Fn(f) => Some(&mut f.attrs),
        ImplItem::Const(c) => Some(&mut c.attrs),
        ImplItem::Type(t) => Some(&mut t.attrs),
        ImplItem::Macro(m) => Some(&mut m.attrs),
        _ => None,
    }
}

/// Removes every `#[step]` attribute from the impl's items.
fn take_step_attrs(imp: &mut ItemImpl) -> Vec<Marked> {
    let mut marked = Vec::new();
    for (index, item) in imp.items.iter_mut().enumerate() {
        let Some(attrs) = item_attrs_mut(item) else {
            continue;
        };
        let (steps, rest): (Vec<_>, Vec<_>) = attrs.drain(..).partition(is_step_attr);
        *attrs = rest;
        if !steps.is_empty() {
            marked.push(Marked { index, attrs: steps });
        }
    }
    marked
}

/// A validated step method.
struct Step {
    name: LitStr,
    method: syn::Ident,
    event_ty: Type,
    takes_ctx: bool,
    args: StepArgs,
    doc: Option<String>,
}

/// Validates every marked method, reporting all bad steps at once.
fn collect_steps(imp: &ItemImpl, marked: Vec<Marked>) -> syn::Result<Vec<Step>> {
    let mut steps: Vec<Step> = Vec::new();
    let mut errors = None;
    for Marked { index, attrs } in marked {
        let result = match &imp.items[index] {
            ImplItem::Fn(method) => step_method(method, &attrs),
            _ => Err(syn::Error::new_spanned(
                &attrs[0],
                "#[step] can only be placed on methods",
            )),
        };
        match result.and_then(|s| check_unique_name(&steps, s)) {
            Ok(s) => steps.push(s),
            Err(e) => combine(&mut errors, e),
        }
    }
    errors.map_or(Ok(steps), Err)
}

fn step_method(method: &ImplItemFn, attrs: &[Attribute]) -> syn::Result<Step> {
    if let Some(extra) = attrs.get(1) {
        return Err(syn::Error::new_spanned(
            extra,
            "duplicate #[step] attribute; put all options in one `#[step(..)]`",
        ));
    }
    let args = StepArgs::from_attr(&attrs[0])?;
    let (takes_ctx, event_ty) = check_signature(&method.sig)?;
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| LitStr::new(&method.sig.ident.to_string(), method.sig.ident.span()));
    Ok(Step {
        name,
        method: method.sig.ident.clone(),
        event_ty: event_ty.clone(),
        takes_ctx,
        args,
        doc: doc_string(&method.attrs),
    })
}

/// Step names key the graph, journals and drawings, so they must be unique.
fn check_unique_name(steps: &[Step], step: Step) -> syn::Result<Step> {
    let name = step.name.value();
    match steps.iter().find(|s| s.name.value() == name) {
        Some(prev) => Err(syn::Error::new(
            step.name.span(),
            format!(
                "duplicate step name `{name}` (also used by method `{}`); \
                 rename one with `#[step(name = \"..\")]`",
                prev.method
            ),
        )),
        None => Ok(step),
    }
}

/// Checks `async fn name(&self, [ctx: &Context,] ev: Event)` and returns
/// whether a context is taken, and the event type.
fn check_signature(sig: &Signature) -> syn::Result<(bool, &Type)> {
    if sig.asyncness.is_none() {
        let (fn_token, ident) = (&sig.fn_token, &sig.ident);
        return Err(syn::Error::new_spanned(
            quote!(#fn_token #ident),
            "#[step] methods must be `async fn`",
        ));
    }
    check_generics(sig)?;
    check_receiver(sig)?;
    let params: Vec<&PatType> = sig
        .inputs
        .iter()
        .filter_map(|arg| match arg {
            FnArg::Typed(pat) => Some(pat),
            FnArg::Receiver(_) => None,
        })
        .collect();
    match params[..] {
        [] => Err(syn::Error::new(
            sig.paren_token.span.join(),
            "a step needs an event parameter, e.g. `async fn step(&self, ev: MyEvent)`",
        )),
        [ev] => Ok((false, check_event_param(ev)?)),
        [ev, ctx] if is_reference(&ctx.ty) && !is_reference(&ev.ty) => {
            let (ident, ctx_pat, ctx_ty, ev_pat, ev_ty) = (&sig.ident, &ctx.pat, &ctx.ty, &ev.pat, &ev.ty);
            let fixed = quote!(async fn #ident(&self, #ctx_pat: #ctx_ty, #ev_pat: #ev_ty)).to_string();
            Err(syn::Error::new_spanned(
                quote!(#ev, #ctx),
                format!(
                    "step parameters are in the wrong order: the context comes first, then the event: `{}`",
                    tidy(&fixed)
                ),
            ))
        }
        [ctx, ev] => {
            check_ctx_param(ctx)?;
            Ok((true, check_event_param(ev)?))
        }
        [_, _, extra, ..] => Err(syn::Error::new_spanned(
            extra,
            "a step takes at most two parameters besides `&self`: \
             `ctx: &Context` and the event",
        )),
    }
}

fn is_reference(ty: &Type) -> bool {
    matches!(ty, Type::Reference(_))
}

/// Token text as a person writes it (`& self` → `&self`, `ctx : & Context` →
/// `ctx: &Context`).
fn tidy(tokens: &str) -> String {
    tokens
        .replace(" :: ", "::")
        .replace(" : ", ": ")
        .replace("& ", "&")
        .replace(" ,", ",")
        .replace("( ", "(")
        .replace(" )", ")")
        .replace(" (", "(")
        .replace(" < ", "<")
        .replace(" >", ">")
}

/// The engine calls steps with concrete event types only.
fn check_generics(sig: &Signature) -> syn::Result<()> {
    match sig
        .generics
        .params
        .iter()
        .find(|p| !matches!(p, GenericParam::Lifetime(_)))
    {
        Some(param) => Err(syn::Error::new_spanned(
            param,
            "step methods cannot have type or const parameters",
        )),
        None => Ok(()),
    }
}

/// Workers run a step concurrently and share the workflow through an
/// `Arc`, so only `&self` is possible.
fn check_receiver(sig: &Signature) -> syn::Result<()> {
    let Some(FnArg::Receiver(receiver)) = sig.inputs.first() else {
        return Err(syn::Error::new(
            sig.paren_token.span.join(),
            "step methods must take `&self` as their first parameter",
        ));
    };
    match &*receiver.ty {
        Type::Reference(r) if r.mutability.is_none() => Ok(()),
        Type::Reference(_) => Err(syn::Error::new_spanned(
            receiver,
            "step methods must take `&self`, not `&mut self`: workers run concurrently \
             and share the workflow; use interior mutability (e.g. a Mutex) or the Context store",
        )),
        _ => Err(syn::Error::new_spanned(
            receiver,
            "step methods must take `&self`: the workflow is shared between workers \
             behind an `Arc`, so it cannot be taken by value",
        )),
    }
}

fn check_ctx_param(ctx: &PatType) -> syn::Result<()> {
    match &*ctx.ty {
        Type::Reference(_) => Ok(()),
        other => Err(syn::Error::new_spanned(
            other,
            "the first of two step parameters is the context and must be `&Context`",
        )),
    }
}

/// The generated caller passes the event by value to a named parameter.
fn check_event_param(ev: &PatType) -> syn::Result<&Type> {
    match &*ev.ty {
        Type::Reference(r) => {
            return Err(syn::Error::new_spanned(
                r,
                "the event parameter must be taken by value (the step owns its event), \
                 not by reference",
            ))
        }
        Type::ImplTrait(t) => {
            return Err(syn::Error::new_spanned(
                t,
                "the event parameter needs a concrete type (an Event or an EventUnion), \
                 not `impl Trait`",
            ))
        }
        _ => {}
    }
    match &*ev.pat {
        Pat::Ident(p) if p.by_ref.is_none() && p.subpat.is_none() => Ok(&ev.ty),
        other => Err(syn::Error::new_spanned(
            other,
            "the event parameter must be a plain name such as `ev`; \
             destructure it inside the method body",
        )),
    }
}

// ---------------------------------------------------------- code generation

fn definition(imp: &ItemImpl, args: &WorkflowArgs, steps: &[Step]) -> TokenStream {
    let self_ty = &imp.self_ty;
    let (start, stop) = start_stop(args);
    let name = args.name.clone().unwrap_or_else(|| default_name(self_ty));
    let doc = doc_string(&imp.attrs).map(|doc| quote!(.doc(#doc)));
    let state = args
        .state
        .as_ref()
        .map(|ty| quote_spanned!(ty.span()=> .state::<#ty>()));
    let runs = args.num_concurrent_runs.map(|n| quote!(.num_concurrent_runs(#n)));
    let registrations = steps.iter().map(|s| registration(self_ty, s));
    quote! {
        #[automatically_derived]
        impl ::stepwise::WorkflowDefinition for #self_ty {
            type Start = #start;
            type Stop = #stop;

            fn builder(self) -> ::stepwise::WorkflowBuilder<Self::Start, Self::Stop> {
                let this = ::std::sync::Arc::new(self);
                ::stepwise::WorkflowBuilder::<Self::Start, Self::Stop>::new(#name)
                    #doc
                    #state
                    #runs
                    #(#registrations)*
            }
        }
    }
}

/// The last path segment of the impl's type, e.g. `MyFlow` for `crate::MyFlow`.
fn default_name(self_ty: &Type) -> LitStr {
    match self_ty {
        Type::Path(p) if p.qself.is_none() => match p.path.segments.last() {
            Some(seg) => LitStr::new(&seg.ident.to_string(), seg.ident.span()),
            None => LitStr::new("workflow", self_ty.span()),
        },
        other => LitStr::new(&other.to_token_stream().to_string().replace(' ', ""), other.span()),
    }
}

/// One `.__step_method(config, this, body)` call. The body is a closure
/// taking an `Arc` of the workflow; the method is called by path
/// (`<T>::m(&*this, ..)`) so a step named like an `Arc` method (`clone`)
/// cannot be shadowed by it. The call is spanned on the method name, so an
/// event or return type that is not one names the step's method.
fn registration(self_ty: &Type, step: &Step) -> TokenStream {
    let config = step_config(step);
    let (method, event_ty) = (&step.method, &step.event_ty);
    let (ctx, call) = if step.takes_ctx {
        (quote!(ctx), quote!(<#self_ty>::#method(&*this, &ctx, ev)))
    } else {
        (quote!(_ctx), quote!(<#self_ty>::#method(&*this, ev)))
    };
    let register = quote_spanned!(method.span()=> __step_method);
    quote! {
        .#register(
            #config,
            ::std::sync::Arc::clone(&this),
            |this: ::std::sync::Arc<#self_ty>, #ctx: ::stepwise::Context, ev: #event_ty| async move { #call.await },
        )
    }
}

fn step_config(step: &Step) -> TokenStream {
    let name = &step.name;
    let workers = step.args.num_workers.map(|n| quote!(.num_workers(#n)));
    let across = step
        .args
        .max_concurrent_across_runs
        .map(|n| quote!(.max_concurrent_across_runs(#n)));
    // Spanned on the user's type so a non-Event type errors right there.
    let emits = step
        .args
        .emits
        .iter()
        .flatten()
        .map(|ty| quote_spanned!(ty.span()=> .emits::<#ty>()));
    let waits = step
        .args
        .waits_for
        .iter()
        .flatten()
        .map(|ty| quote_spanned!(ty.span()=> .waits_for::<#ty>()));
    let skips = step.args.skip_checks.iter().flatten().map(|check| {
        let variant = check.variant();
        quote!(.skip_check(::stepwise::GraphCheck::#variant))
    });
    let doc = step.doc.as_ref().map(|doc| quote!(.doc(#doc)));
    let retry = step
        .args
        .retry
        .as_ref()
        .map(|policy| quote_spanned!(policy.span()=> .retry(#policy)));
    let catch = step.args.catch_errors.as_ref().map(|scope| match scope {
        Some(scope) => quote_spanned!(scope.span()=> .catch_errors(#scope)),
        None => quote!(.catch_errors(::stepwise::CatchErrors::all())),
    });
    quote! {
        ::stepwise::StepConfig::new(#name) #workers #across #(#emits)* #(#waits)* #(#skips)* #retry #catch #doc
    }
}
