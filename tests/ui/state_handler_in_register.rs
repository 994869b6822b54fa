use jisr::{Registry, Request, ResponseWriter};

struct Greeting(String);

async fn greet(greeting: &Greeting, mut req: Request<'_>, _w: ResponseWriter<'_>) {
    let _ = req.set_header("x-greeting", &greeting.0);
}

fn register(r: &mut Registry) {
    r.register("greet", greet);
}

fn main() {
    let _ = register;
}
