//! `#[derive(Event)]`: names an event type and gives it a kind.

use proc_macro2::TokenStream;
use quote::quote;
use syn::{Attribute, Data, DeriveInput, Fields, LitStr};

use crate::attrs::EventArgs;

pub fn derive(input: TokenStream) -> TokenStream {
    syn::parse2::<DeriveInput>(input)
        .and_then(|input| expand(&input))
        .unwrap_or_else(syn::Error::into_compile_error)
}

fn expand(input: &DeriveInput) -> syn::Result<TokenStream> {
    reject_generics(input, "Event")?;
    if let Data::Union(data) = &input.data {
        return Err(syn::Error::new(
            data.union_token.span,
            "#[derive(Event)] supports structs and enums, not unions",
        ));
    }
    reject_inner_event_attrs(&input.data)?;
    let args = EventArgs::from_attrs(&input.attrs)?;
    let ident = &input.ident;
    let name = args
        .name
        .unwrap_or_else(|| LitStr::new(&ident.to_string(), ident.span()));
    // Regular is the trait's default; leaving it out keeps the impl minimal.
    let kind = args.kind.map(|flag| {
        let variant = flag.variant();
        quote!(const KIND: ::stepwise::EventKind = ::stepwise::EventKind::#variant;)
    });
    let schema = crate::schema::schema_fn(input, &name);
    Ok(quote! {
        #[automatically_derived]
        impl ::stepwise::Event for #ident {
            const NAME: &'static str = #name;
            #kind
            #schema
        }
    })
}

/// Events are looked up by a single stable name, which a generic type
/// (one name, many types) cannot provide; so generics are rejected.
pub fn reject_generics(input: &DeriveInput, derive: &str) -> syn::Result<()> {
    let generics = &input.generics;
    if generics.params.is_empty() && generics.where_clause.is_none() {
        return Ok(());
    }
    Err(syn::Error::new_spanned(
        generics,
        format!(
            "#[derive({derive})] does not support generic types: \
             an event needs one stable name; define a concrete type per event"
        ),
    ))
}

/// `event` is a derive helper, so rustc accepts `#[event(..)]` on fields and
/// variants too; there it would be silently ignored, so reject it.
fn reject_inner_event_attrs(data: &Data) -> syn::Result<()> {
    let fields: Vec<&Fields> = match data {
        Data::Struct(s) => vec![&s.fields],
        Data::Enum(e) => e.variants.iter().map(|v| &v.fields).collect(),
        Data::Union(_) => Vec::new(),
    };
    let variant_attrs = match data {
        Data::Enum(e) => e.variants.iter().flat_map(|v| &v.attrs).collect(),
        _ => Vec::new(),
    };
    let field_attrs = fields.into_iter().flatten().flat_map(|f| &f.attrs);
    let misplaced = variant_attrs
        .into_iter()
        .chain(field_attrs)
        .find(|a: &&Attribute| a.path().is_ident("event"));
    match misplaced {
        Some(attr) => Err(syn::Error::new_spanned(
            attr,
            "#[event(..)] goes on the event type itself, not on its fields or variants",
        )),
        None => Ok(()),
    }
}
