//! The route table: every route of the server is added through `Routes`, which builds the axum
//! router and records each method and path as it goes. The access-matrix test walks this same
//! table (`crate::route_table`), so a route cannot exist without a row in the matrix.

use crate::state::AppState;
use axum::handler::Handler;
use axum::routing::{self, MethodRouter};
use axum::Router;

/// One method on one path, as the router has it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
}

/// A router and the table of what it serves.
#[derive(Default)]
pub struct Routes {
    router: Router<AppState>,
    table: Vec<Route>,
}

macro_rules! method {
    ($($name:ident => $method:literal),*) => {
        $(
            pub fn $name<H, T>(self, path: &'static str, handler: H) -> Routes
            where
                H: Handler<T, AppState>,
                T: 'static,
            {
                self.with($method, path, routing::$name(handler))
            }
        )*
    };
}

impl Routes {
    pub fn new() -> Routes {
        Routes::default()
    }

    method!(get => "GET", post => "POST", patch => "PATCH", delete => "DELETE");

    /// A route built by hand (for one that needs a layer of its own): `method` must be the one
    /// `route` answers.
    pub fn with(mut self, method: &'static str, path: &'static str, route: MethodRouter<AppState>) -> Routes {
        self.router = self.router.route(path, route);
        self.table.push(Route { method, path });
        self
    }

    pub fn merge(mut self, other: Routes) -> Routes {
        self.router = self.router.merge(other.router);
        self.table.extend(other.table);
        self
    }

    pub fn table(&self) -> &[Route] {
        &self.table
    }

    pub fn into_router(self) -> Router<AppState> {
        self.router
    }
}
