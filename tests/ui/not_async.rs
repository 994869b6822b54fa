use jisr::{Registry, Request, ResponseWriter};

fn hello(mut req: Request<'_>, _w: ResponseWriter<'_>) {
    let _ = req.set_header("x-hello", "world");
}

fn register(r: &mut Registry) {
    r.register("hello", hello);
}

fn main() {
    let _ = register;
}
