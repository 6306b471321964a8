//! Option parsing for `#[event(...)]`, `#[workflow(...)]` and `#[step(...)]`.
//!
//! Every parser rejects unknown and duplicate keys with an error spanned on
//! the offending key, so the user sees exactly which option is wrong.

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::meta::ParseNestedMeta;
use syn::parse::{ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::{bracketed, Attribute, Expr, ExprLit, Ident, Lit, LitStr, Meta, Token, Type, UnOp};

const EVENT_OPTIONS: &str = "name, start, stop, input_required, human_response";
const WORKFLOW_OPTIONS: &str = "name, start, stop, state, num_concurrent_runs";
const STEP_OPTIONS: &str =
    "name, num_workers, max_concurrent_across_runs, emits, waits_for, skip_checks, retry, catch_errors";
const GRAPH_CHECKS: &str = "reachability, dead_end, terminal_event";

/// The key of a nested meta item as the user wrote it, for error messages.
fn key_name(meta: &ParseNestedMeta) -> String {
    meta.path.to_token_stream().to_string().replace(' ', "")
}

/// Stores `value` in `slot`, rejecting a key that was already given.
fn set_once<T>(slot: &mut Option<T>, value: T, meta: &ParseNestedMeta) -> syn::Result<()> {
    if slot.is_some() {
        return Err(meta.error(format!("duplicate `{}` option", key_name(meta))));
    }
    *slot = Some(value);
    Ok(())
}

/// Parses `= "non-empty string"`; `what` names the thing in the error.
fn parse_name(meta: &ParseNestedMeta, what: &str) -> syn::Result<LitStr> {
    let lit: LitStr = meta.value()?.parse()?;
    if lit.value().trim().is_empty() {
        return Err(syn::Error::new(lit.span(), format!("{what} name must not be empty")));
    }
    Ok(lit)
}

/// Parses `[A, B]` or a single item `A` after `=`.
fn parse_list<T>(input: ParseStream, item: fn(ParseStream) -> syn::Result<T>) -> syn::Result<Vec<T>> {
    if !input.peek(syn::token::Bracket) {
        return Ok(vec![item(input)?]);
    }
    let content;
    bracketed!(content in input);
    let list = Punctuated::<T, Token![,]>::parse_terminated_with(&content, item)?;
    Ok(list.into_iter().collect())
}

// ---------------------------------------------------------------- #[event]

/// The kind flags `#[event(...)]` accepts, mapped to `EventKind` variants.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum KindFlag {
    Start,
    Stop,
    InputRequired,
    HumanResponse,
}

impl KindFlag {
    fn from_key(key: &str) -> Option<Self> {
        match key {
            "start" => Some(Self::Start),
            "stop" => Some(Self::Stop),
            "input_required" => Some(Self::InputRequired),
            "human_response" => Some(Self::HumanResponse),
            _ => None,
        }
    }

    fn key(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Stop => "stop",
            Self::InputRequired => "input_required",
            Self::HumanResponse => "human_response",
        }
    }

    /// The `EventKind` variant identifier.
    pub fn variant(self) -> Ident {
        let name = match self {
            Self::Start => "Start",
            Self::Stop => "Stop",
            Self::InputRequired => "InputRequired",
            Self::HumanResponse => "HumanResponse",
        };
        Ident::new(name, Span::call_site())
    }
}

/// Options of `#[event(...)]`, merged over all such attributes on the item.
#[derive(Default)]
pub struct EventArgs {
    pub name: Option<LitStr>,
    pub kind: Option<KindFlag>,
}

impl EventArgs {
    pub fn from_attrs(attrs: &[Attribute]) -> syn::Result<Self> {
        let mut args = Self::default();
        for attr in attrs.iter().filter(|a| a.path().is_ident("event")) {
            attr.parse_nested_meta(|meta| args.parse_option(&meta))?;
        }
        Ok(args)
    }

    fn parse_option(&mut self, meta: &ParseNestedMeta) -> syn::Result<()> {
        let key = key_name(meta);
        if key == "name" {
            let name = parse_name(meta, "event")?;
            return set_once(&mut self.name, name, meta);
        }
        match KindFlag::from_key(&key) {
            Some(flag) => self.set_kind(flag, meta),
            None => Err(meta.error(format!(
                "unknown #[event] option `{key}`; valid options are: {EVENT_OPTIONS}"
            ))),
        }
    }

    fn set_kind(&mut self, flag: KindFlag, meta: &ParseNestedMeta) -> syn::Result<()> {
        if meta.input.peek(Token![=]) || meta.input.peek(syn::token::Paren) {
            return Err(meta.error(format!(
                "`{}` is a flag and takes no value: write `#[event({})]`",
                flag.key(),
                flag.key()
            )));
        }
        match self.kind {
            Some(prev) if prev == flag => Err(meta.error(format!("duplicate `{}` option", flag.key()))),
            Some(prev) => Err(meta.error(format!(
                "an event has at most one kind, but both `{}` and `{}` are given",
                prev.key(),
                flag.key()
            ))),
            None => {
                self.kind = Some(flag);
                Ok(())
            }
        }
    }
}

// ------------------------------------------------------------- #[workflow]

/// Options of `#[workflow(...)]`.
#[derive(Default)]
pub struct WorkflowArgs {
    pub name: Option<LitStr>,
    pub start: Option<Type>,
    pub stop: Option<Type>,
    pub state: Option<Type>,
    pub num_concurrent_runs: Option<usize>,
}

impl WorkflowArgs {
    pub fn parse(args: TokenStream) -> syn::Result<Self> {
        let mut parsed = Self::default();
        let parser = syn::meta::parser(|meta| parsed.parse_option(&meta));
        parser.parse2(args)?;
        Ok(parsed)
    }

    fn parse_option(&mut self, meta: &ParseNestedMeta) -> syn::Result<()> {
        match key_name(meta).as_str() {
            "name" => {
                let name = parse_name(meta, "workflow")?;
                set_once(&mut self.name, name, meta)
            }
            "start" => {
                let ty: Type = meta.value()?.parse()?;
                set_once(&mut self.start, ty, meta)
            }
            "stop" => {
                let ty: Type = meta.value()?.parse()?;
                set_once(&mut self.stop, ty, meta)
            }
            "state" => {
                let ty: Type = meta.value()?.parse()?;
                set_once(&mut self.state, ty, meta)
            }
            "num_concurrent_runs" => {
                let n = parse_at_least_one(meta, "num_concurrent_runs")?;
                set_once(&mut self.num_concurrent_runs, n, meta)
            }
            key => Err(meta.error(format!(
                "unknown #[workflow] option `{key}`; valid options are: {WORKFLOW_OPTIONS}"
            ))),
        }
    }
}

// ----------------------------------------------------------------- #[step]

/// A graph check named in `skip_checks = [...]`, mapped to `GraphCheck`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum GraphCheck {
    Reachability,
    DeadEnd,
    TerminalEvent,
}

impl GraphCheck {
    fn parse(input: ParseStream) -> syn::Result<(Self, Ident)> {
        let ident: Ident = input.parse()?;
        let check = match ident.to_string().as_str() {
            "reachability" => Self::Reachability,
            "dead_end" => Self::DeadEnd,
            "terminal_event" => Self::TerminalEvent,
            other => {
                return Err(syn::Error::new(
                    ident.span(),
                    format!("unknown graph check `{other}`; valid checks are: {GRAPH_CHECKS}"),
                ))
            }
        };
        Ok((check, ident))
    }

    /// The `GraphCheck` variant identifier.
    pub fn variant(self) -> Ident {
        let name = match self {
            Self::Reachability => "Reachability",
            Self::DeadEnd => "DeadEnd",
            Self::TerminalEvent => "TerminalEvent",
        };
        Ident::new(name, Span::call_site())
    }
}

/// Options of one `#[step(...)]` attribute.
#[derive(Default)]
pub struct StepArgs {
    pub name: Option<LitStr>,
    pub num_workers: Option<usize>,
    pub max_concurrent_across_runs: Option<usize>,
    pub emits: Option<Vec<Type>>,
    pub waits_for: Option<Vec<Type>>,
    pub skip_checks: Option<Vec<GraphCheck>>,
    /// `retry = <expr>`: a `RetryPolicy` expression.
    pub retry: Option<Expr>,
    /// `catch_errors` (catch-all) or `catch_errors = <expr>` (a `CatchErrors`).
    pub catch_errors: Option<Option<Expr>>,
}

impl StepArgs {
    pub fn from_attr(attr: &Attribute) -> syn::Result<Self> {
        let mut args = Self::default();
        match &attr.meta {
            // Bare `#[step]`: all defaults.
            Meta::Path(_) => {}
            Meta::List(_) => attr.parse_nested_meta(|meta| args.parse_option(&meta))?,
            Meta::NameValue(nv) => {
                return Err(syn::Error::new_spanned(
                    nv,
                    "expected `#[step]` or `#[step(option = value, ...)]`",
                ))
            }
        }
        Ok(args)
    }

    fn parse_option(&mut self, meta: &ParseNestedMeta) -> syn::Result<()> {
        match key_name(meta).as_str() {
            "name" => {
                let name = parse_name(meta, "step")?;
                set_once(&mut self.name, name, meta)
            }
            "num_workers" => {
                let n = parse_num_workers(meta)?;
                set_once(&mut self.num_workers, n, meta)
            }
            "max_concurrent_across_runs" => {
                let n = parse_at_least_one(meta, "max_concurrent_across_runs")?;
                set_once(&mut self.max_concurrent_across_runs, n, meta)
            }
            "emits" => {
                let types = parse_list(meta.value()?, |input| input.parse::<Type>())?;
                set_once(&mut self.emits, types, meta)
            }
            "waits_for" => {
                let types = parse_list(meta.value()?, |input| input.parse::<Type>())?;
                set_once(&mut self.waits_for, types, meta)
            }
            "skip_checks" => {
                let checks = parse_skip_checks(meta)?;
                set_once(&mut self.skip_checks, checks, meta)
            }
            "retry" => {
                let policy: Expr = meta.value()?.parse()?;
                set_once(&mut self.retry, policy, meta)
            }
            "catch_errors" => {
                let scope = if meta.input.peek(syn::Token![=]) {
                    Some(meta.value()?.parse::<Expr>()?)
                } else {
                    None
                };
                set_once(&mut self.catch_errors, scope, meta)
            }
            key => Err(meta.error(format!(
                "unknown #[step] option `{key}`; valid options are: {STEP_OPTIONS}"
            ))),
        }
    }
}

/// Parses `= <int literal>`, requiring at least one worker: a step with
/// zero workers could never run, so we reject it before the core does.
fn parse_num_workers(meta: &ParseNestedMeta) -> syn::Result<usize> {
    parse_at_least_one(meta, "num_workers")
}

/// Parses `= <int literal>` of at least 1 for the option `key` (a limit of
/// zero would let nothing run).
fn parse_at_least_one(meta: &ParseNestedMeta, key: &str) -> syn::Result<usize> {
    let expr: Expr = meta.value()?.parse()?;
    match &expr {
        Expr::Lit(ExprLit { lit: Lit::Int(int), .. }) => {
            let n: usize = int.base10_parse()?;
            if n == 0 {
                return Err(syn::Error::new(int.span(), format!("{key} must be at least 1")));
            }
            Ok(n)
        }
        Expr::Unary(unary) if matches!(unary.op, UnOp::Neg(_)) => {
            Err(syn::Error::new_spanned(&expr, format!("{key} must be at least 1")))
        }
        _ => Err(syn::Error::new_spanned(
            &expr,
            format!("{key} must be an integer literal, e.g. `{key} = 4`"),
        )),
    }
}

/// Parses `= [check, ...]`, rejecting a check listed twice.
fn parse_skip_checks(meta: &ParseNestedMeta) -> syn::Result<Vec<GraphCheck>> {
    let parsed = parse_list(meta.value()?, GraphCheck::parse)?;
    let mut checks = Vec::with_capacity(parsed.len());
    for (check, ident) in parsed {
        if checks.contains(&check) {
            return Err(syn::Error::new(
                ident.span(),
                format!("graph check `{ident}` is listed twice"),
            ));
        }
        checks.push(check);
    }
    Ok(checks)
}

// -------------------------------------------------------------------- docs

/// Joins the `///` doc comments in `attrs` into one string: each line is
/// trimmed (rustdoc keeps the space after `///`), blank edges are dropped.
/// Non-literal docs such as `#[doc = include_str!(..)]` cannot be read by a
/// macro and are skipped.
pub fn doc_string(attrs: &[Attribute]) -> Option<String> {
    let lines: Vec<String> = attrs.iter().filter_map(doc_literal).collect();
    let joined = lines
        .iter()
        // `split`, not `lines`: a bare `///` is `""`, a paragraph break to keep.
        .flat_map(|chunk| chunk.split('\n'))
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("\n");
    let text = joined.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

fn doc_literal(attr: &Attribute) -> Option<String> {
    if !attr.path().is_ident("doc") {
        return None;
    }
    match &attr.meta {
        Meta::NameValue(nv) => match &nv.value {
            Expr::Lit(ExprLit { lit: Lit::Str(s), .. }) => Some(s.value()),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use syn::parse_quote;

    #[test]
    fn doc_lines_are_trimmed_and_joined() {
        let attrs: Vec<Attribute> = vec![
            parse_quote!(#[doc = " First line. "]),
            parse_quote!(#[doc = ""]),
            parse_quote!(#[doc = "  Second."]),
            parse_quote!(#[inline]),
        ];
        assert_eq!(doc_string(&attrs).as_deref(), Some("First line.\n\nSecond."));
    }

    #[test]
    fn no_doc_is_none() {
        let attrs: Vec<Attribute> = vec![parse_quote!(#[doc = "   "])];
        assert_eq!(doc_string(&attrs), None);
    }

    #[test]
    fn step_args_parse_every_option() {
        let attr: Attribute = parse_quote!(#[step(
            name = "n",
            num_workers = 2,
            emits = [A, b::B],
            skip_checks = [dead_end, reachability]
        )]);
        let args = StepArgs::from_attr(&attr).expect("valid options");
        assert_eq!(args.name.map(|n| n.value()).as_deref(), Some("n"));
        assert_eq!(args.num_workers, Some(2));
        assert_eq!(args.emits.map(|e| e.len()), Some(2));
        assert_eq!(
            args.skip_checks,
            Some(vec![GraphCheck::DeadEnd, GraphCheck::Reachability])
        );
    }

    #[test]
    fn step_args_reject_bad_input() {
        let cases: Vec<(Attribute, &str)> = vec![
            (parse_quote!(#[step(num_workers = 0)]), "at least 1"),
            (parse_quote!(#[step(num_workers = -3)]), "at least 1"),
            (parse_quote!(#[step(num_workers = x)]), "integer literal"),
            (parse_quote!(#[step(foo = 1)]), "unknown #[step] option `foo`"),
            (parse_quote!(#[step(name = "")]), "must not be empty"),
            (parse_quote!(#[step(name = "a", name = "b")]), "duplicate `name`"),
            (parse_quote!(#[step(skip_checks = [nope])]), "unknown graph check"),
            (parse_quote!(#[step(skip_checks = [dead_end, dead_end])]), "twice"),
        ];
        for (attr, want) in cases {
            let err = StepArgs::from_attr(&attr).err().expect("should fail");
            assert!(err.to_string().contains(want), "{err} !~ {want}");
        }
    }

    #[test]
    fn event_args_reject_conflicting_kinds() {
        let attrs: Vec<Attribute> = vec![parse_quote!(#[event(start, stop)])];
        let err = EventArgs::from_attrs(&attrs).err().expect("should fail");
        assert!(err.to_string().contains("at most one kind"), "{err}");
    }

    #[test]
    fn workflow_args_parse() {
        let args = WorkflowArgs::parse(quote::quote!(name = "w", start = S, stop = a::O)).expect("valid options");
        assert_eq!(args.name.map(|n| n.value()).as_deref(), Some("w"));
        assert!(args.start.is_some() && args.stop.is_some());
        let err = WorkflowArgs::parse(quote::quote!(begin = S))
            .err()
            .expect("should fail");
        assert!(err.to_string().contains("valid options are: name, start, stop"));
    }
}
