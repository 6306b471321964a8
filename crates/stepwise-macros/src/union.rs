//! `#[derive(EventUnion)]`: an enum of events usable as a step's input
//! (accept any of them) and output (emit whichever one it holds).

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{Data, DataEnum, DeriveInput, Fields, Ident, Type, Variant};

use crate::combine;
use crate::event::reject_generics;

/// One `Variant(Type)` of the union.
struct Member<'a> {
    variant: &'a Ident,
    ty: &'a Type,
}

pub fn derive(input: TokenStream) -> TokenStream {
    syn::parse2::<DeriveInput>(input)
        .and_then(|input| expand(&input))
        .unwrap_or_else(syn::Error::into_compile_error)
}

fn expand(input: &DeriveInput) -> syn::Result<TokenStream> {
    reject_generics(input, "EventUnion")?;
    let data = as_enum(input)?;
    let members = members(input, data)?;
    let ident = &input.ident;
    let types: Vec<_> = members.iter().map(|m| m.ty).collect();
    let downcasts = members.iter().map(|Member { variant, ty }| {
        quote! {
            let ev = match ev.downcast::<#ty>() {
                ::std::result::Result::Ok(inner) => {
                    return ::std::result::Result::Ok(Self::#variant(inner))
                }
                ::std::result::Result::Err(ev) => ev,
            };
        }
    });
    // Spanned on the type so "not an Event" errors point at the variant.
    let emits = members.iter().map(|Member { variant, ty }| {
        quote_spanned! {ty.span()=>
            Self::#variant(inner) => out.push(::stepwise::AnyEvent::new::<#ty>(inner)),
        }
    });
    let copies = members.iter().map(|Member { variant, ty }| {
        quote! {
            Self::#variant(inner) => ::stepwise::AnyEvent::new::<#ty>(::std::clone::Clone::clone(inner)),
        }
    });
    let froms = members.iter().map(|Member { variant, ty }| {
        quote! {
            #[automatically_derived]
            impl ::std::convert::From<#ty> for #ident {
                fn from(inner: #ty) -> Self {
                    Self::#variant(inner)
                }
            }
        }
    });
    Ok(quote! {
        #[automatically_derived]
        impl ::stepwise::StepInput for #ident {
            fn accepted_types() -> ::std::vec::Vec<::stepwise::EventType> {
                ::std::vec![#(::stepwise::EventType::of::<#types>()),*]
            }

            fn from_event(
                ev: ::stepwise::AnyEvent,
            ) -> ::std::result::Result<Self, ::stepwise::AnyEvent> {
                #(#downcasts)*
                ::std::result::Result::Err(ev)
            }
        }

        #[automatically_derived]
        impl ::stepwise::StepOutput for #ident {
            fn emitted_types() -> ::std::vec::Vec<::stepwise::EventType> {
                ::std::vec![#(::stepwise::EventType::of::<#types>()),*]
            }

            fn emit(
                self,
                out: &mut ::stepwise::Emitted,
            ) -> ::std::result::Result<(), ::stepwise::StepError> {
                match self {
                    #(#emits)*
                }
                ::std::result::Result::Ok(())
            }
        }

        #[automatically_derived]
        impl ::stepwise::ToAnyEvent for #ident {
            fn to_any_event(&self) -> ::stepwise::AnyEvent {
                match self {
                    #(#copies)*
                }
            }
        }

        #(#froms)*
    })
}

fn as_enum(input: &DeriveInput) -> syn::Result<&DataEnum> {
    let keyword = match &input.data {
        Data::Enum(data) => return Ok(data),
        Data::Struct(data) => data.struct_token.span,
        Data::Union(data) => data.union_token.span,
    };
    Err(syn::Error::new(
        keyword,
        "#[derive(EventUnion)] only works on enums whose variants each wrap one event, \
         e.g. `enum Input { A(EventA), B(EventB) }`",
    ))
}

/// Validates every variant, collecting all errors so each bad variant is
/// reported at once.
fn members<'a>(input: &'a DeriveInput, data: &'a DataEnum) -> syn::Result<Vec<Member<'a>>> {
    if data.variants.is_empty() {
        return Err(syn::Error::new(
            input.ident.span(),
            "#[derive(EventUnion)] needs at least one variant: an empty union accepts no event",
        ));
    }
    let mut members: Vec<Member> = Vec::new();
    let mut errors: Option<syn::Error> = None;
    for variant in &data.variants {
        match member(variant).and_then(|m| check_distinct(&members, m)) {
            Ok(m) => members.push(m),
            Err(e) => combine(&mut errors, e),
        }
    }
    errors.map_or(Ok(members), Err)
}

fn member(variant: &Variant) -> syn::Result<Member<'_>> {
    match &variant.fields {
        Fields::Unnamed(fields) if fields.unnamed.len() == 1 => Ok(Member {
            variant: &variant.ident,
            ty: &fields.unnamed[0].ty,
        }),
        _ => Err(syn::Error::new_spanned(
            variant,
            format!(
                "EventUnion variant `{}` must wrap exactly one event, e.g. `{}(MyEvent)`",
                variant.ident, variant.ident
            ),
        )),
    }
}

/// Two variants of one type would make `from_event` ambiguous and the
/// `From` impls conflict.
fn check_distinct<'a>(seen: &[Member<'a>], m: Member<'a>) -> syn::Result<Member<'a>> {
    let key = m.ty.to_token_stream().to_string();
    match seen.iter().find(|s| s.ty.to_token_stream().to_string() == key) {
        Some(prev) => Err(syn::Error::new_spanned(
            m.ty,
            format!(
                "event type `{}` is already wrapped by variant `{}`; \
                 each variant of an EventUnion must wrap a distinct event type",
                key.replace(' ', ""),
                prev.variant
            ),
        )),
        None => Ok(m),
    }
}
