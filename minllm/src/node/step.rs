//! A node made of one function: for the quick steps of a runtime flow.

use super::{ExecContext, Node};
use crate::action::Action;
use crate::error::NodeResult;
use crate::params::Params;

/// A node made of one function of the store and the params, which returns
/// the action: see [`step`].
pub struct Step<F>(F);

/// A node made of one function, for a quick step of a runtime flow: it reads
/// and writes the store and returns the action (`()`, a `&'static str`, or an
/// enum deriving [`Action`](derive@crate::Action)), with no associated types
/// and no ignored parameters.
///
/// The function runs where `post` runs, holding the store: keep it quick. A
/// call that takes time (a model, a search) belongs in the `exec` of a
/// [`Node`] or a `#[node]` type, which runs without the store, is retried, and
/// is checkpointed on its own.
///
/// ```
/// use minllm::{Flow, NodeResult, Params, SharedStore, step};
///
/// let mut flow = Flow::new("greet");
/// let name = flow.add("name", step(|store: &mut SharedStore, params: &Params| -> NodeResult<&'static str> {
///     let name: String = params.get("name")?;
///     store.set("greeting", format!("hello {name}"));
///     Ok(if name.is_empty() { "anonymous" } else { "named" })
/// }));
/// let shout = flow.add("shout", step(|store: &mut SharedStore, _: &Params| -> NodeResult<()> {
///     let greeting: String = store.try_get("greeting")?;
///     store.set("greeting", greeting.to_uppercase());
///     Ok(())
/// }));
/// flow.edge(name.on("named") >> shout).edge(name.on("anonymous") >> minllm::End);
/// flow.params(Params::new().with("name", "ada"));
///
/// let mut store = SharedStore::new();
/// flow.run(&mut store).unwrap();
/// assert_eq!(store.get::<String>("greeting").unwrap(), "HELLO ADA");
/// ```
pub fn step<S, A, F>(f: F) -> Step<F>
where
    A: Action,
    F: Fn(&mut S, &Params) -> NodeResult<A> + Send + Sync + 'static,
{
    Step(f)
}

impl<S, A, F> Node<S> for Step<F>
where
    A: Action,
    F: Fn(&mut S, &Params) -> NodeResult<A> + Send + Sync + 'static,
{
    type Prep = Params;
    type Exec = ();
    type Action = A;

    fn prep(&self, _: &S, params: &Params) -> NodeResult<Params> {
        Ok(params.clone())
    }

    fn exec(&self, _: &Params, _: &ExecContext<'_>) -> NodeResult<()> {
        Ok(())
    }

    fn post(&self, store: &mut S, params: Params, _: ()) -> NodeResult<A> {
        (self.0)(store, &params)
    }

    fn exec_blocks(&self) -> bool {
        false
    }
}

impl<F> std::fmt::Debug for Step<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Step")
    }
}
